/*
 * dump.h - one text line per stream record (memray-stat --dump).
 * The line format is specified in memray-stat(1).
 */
#ifndef MEMRAY_DUMP_H
#define MEMRAY_DUMP_H

#include <stdio.h>

#include "stream.h"

void mr_dump_record(FILE *f, const struct mr_record *rec);

#endif

/*
 * symcache.h - the frames named for a module's addresses, kept on disk
 * from one reading to the next.
 *
 * Naming a native frame costs little once a module's debug information
 * is read, but reading it is most of what a reader spends on a small
 * recording: libdw inflates every compressed DWARF section of a -dbg
 * package's file (libc6-dbg's: 50 ms) before it can name one address.
 * A module's frames are what its build-id and its debug file make them,
 * so they are kept in a file named by the build-id, with the debug
 * file's path, size, times and inode; a later reading that finds
 * the same debug file, unchanged, takes them from there, and reads the
 * DWARF only for an address not kept yet.
 *
 * The directory is $MEMRAY_SYMBOL_CACHE ("off" or empty: no cache), or
 * memray-c/symbols under $XDG_CACHE_HOME, or under ~/.cache. A cache
 * that cannot be written is done without, silently: it only saves time.
 */
#ifndef MEMRAY_SYMCACHE_H
#define MEMRAY_SYMCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct symcache;

/* The cache's directory, or NULL when it is off (no home either). The
 * text is the process's own. */
const char *symcache_dir(void);

/* The kept frames of the module whose build-id is id (id_len bytes, at
 * least 1) and whose file's base name is module, from dir, when they were
 * named from debug_path (the module file itself when its DWARF is its
 * own) as st finds it now (size, times, inode), the file this
 * reading finds; else none. A file that is there but malformed is
 * reported once on stderr and removed. */
struct symcache *symcache_load(const char *dir, const uint8_t *id, uint32_t id_len,
			       const char *module, const char *debug_path, const struct stat *st);

/* The text kept for module address addr, or NULL. */
const char *symcache_get(const struct symcache *c, uint64_t addr);

/* Keeps text for addr, named by reading debug_path's DWARF: only when it
 * is c's debug_path. */
void symcache_put(struct symcache *c, uint64_t addr, const char *text, const char *debug_path);

/* Writes the file anew when put added frames, with the debug file as
 * symcache_load was given it; then frees c. */
void symcache_close(struct symcache *c);

/* Removes from dir the cache files neither written nor touched by a
 * reading that used them for 7 days, and the temporary
 * files of a killed writer, a day old, when dir/.cleaned (which it then
 * touches) is a day old or missing: symcache_load does this once a
 * process. The number of files removed. */
int symcache_clean(const char *dir, time_t now);

/* For the unit tests: c without reading its file, and the parse of a
 * cache file's bytes: 0 and the entries in c, 1 when they are another
 * version's or named from another file than c's, -1 and why when it is
 * malformed. */
struct symcache *symcache_new(const char *dir, const uint8_t *id, uint32_t id_len,
			      const char *module, const char *debug_path, const struct stat *st);
int symcache_parse(struct symcache *c, const char *buf, size_t len, const char **why);
size_t symcache_count(const struct symcache *c);

#endif

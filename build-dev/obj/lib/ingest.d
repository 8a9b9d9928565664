build-dev/obj/lib/ingest.o: lib/ingest.c lib/ingest.h lib/replay.h \
 lib/live.h lib/stream.h lib/input.h lib/util.h
lib/ingest.h:
lib/replay.h:
lib/live.h:
lib/stream.h:
lib/input.h:
lib/util.h:

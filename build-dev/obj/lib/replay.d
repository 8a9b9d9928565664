build-dev/obj/lib/replay.o: lib/replay.c lib/replay.h lib/live.h \
 lib/stream.h
lib/replay.h:
lib/live.h:
lib/stream.h:

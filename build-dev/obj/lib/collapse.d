build-dev/obj/lib/collapse.o: lib/collapse.c lib/collapse.h lib/replay.h \
 lib/live.h lib/stream.h lib/symbolize.h lib/util.h
lib/collapse.h:
lib/replay.h:
lib/live.h:
lib/stream.h:
lib/symbolize.h:
lib/util.h:

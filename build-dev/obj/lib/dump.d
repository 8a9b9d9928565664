build-dev/obj/lib/dump.o: lib/dump.c lib/dump.h lib/stream.h lib/util.h
lib/dump.h:
lib/stream.h:
lib/util.h:

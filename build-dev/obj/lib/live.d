build-dev/obj/lib/live.o: lib/live.c lib/live.h lib/stream.h
lib/live.h:
lib/stream.h:

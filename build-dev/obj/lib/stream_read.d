build-dev/obj/lib/stream_read.o: lib/stream_read.c lib/input.h \
 lib/stream.h lib/varint.h
lib/input.h:
lib/stream.h:
lib/varint.h:

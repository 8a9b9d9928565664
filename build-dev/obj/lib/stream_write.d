build-dev/obj/lib/stream_write.o: lib/stream_write.c lib/stream.h \
 lib/varint.h
lib/stream.h:
lib/varint.h:

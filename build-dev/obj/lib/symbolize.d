build-dev/obj/lib/symbolize.o: lib/symbolize.c lib/symbolize.h \
 lib/stream.h lib/util.h
lib/symbolize.h:
lib/stream.h:
lib/util.h:

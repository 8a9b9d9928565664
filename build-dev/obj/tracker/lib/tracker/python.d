build-dev/obj/tracker/lib/tracker/python.o: lib/tracker/python.c \
 lib/tracker/../stream.h lib/tracker/python.h lib/tracker/tracker.h
lib/tracker/../stream.h:
lib/tracker/python.h:
lib/tracker/tracker.h:

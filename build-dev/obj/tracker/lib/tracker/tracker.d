build-dev/obj/tracker/lib/tracker/tracker.o: lib/tracker/tracker.c \
 lib/tracker/../stream.h lib/tracker/../util.h lib/tracker/python.h \
 lib/tracker/tracker.h
lib/tracker/../stream.h:
lib/tracker/../util.h:
lib/tracker/python.h:
lib/tracker/tracker.h:

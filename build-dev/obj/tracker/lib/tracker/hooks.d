build-dev/obj/tracker/lib/tracker/hooks.o: lib/tracker/hooks.c \
 lib/tracker/../stream.h lib/tracker/tracker.h
lib/tracker/../stream.h:
lib/tracker/tracker.h:

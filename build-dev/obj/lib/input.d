build-dev/obj/lib/input.o: lib/input.c lib/input.h
lib/input.h:

build-dev/obj/lib/folded.o: lib/folded.c lib/folded.h lib/input.h
lib/folded.h:
lib/input.h:

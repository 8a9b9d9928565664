build-dev/obj/cmd/memray-record/main.o: cmd/memray-record/main.c \
 cmd/memray-record/../../lib/stream.h cmd/memray-record/../../lib/util.h
cmd/memray-record/../../lib/stream.h:
cmd/memray-record/../../lib/util.h:

build-dev/obj/cmd/memray-live/main.o: cmd/memray-live/main.c \
 cmd/memray-live/../../lib/collapse.h cmd/memray-live/../../lib/replay.h \
 cmd/memray-live/../../lib/live.h cmd/memray-live/../../lib/stream.h \
 cmd/memray-live/../../lib/symbolize.h cmd/memray-live/../../lib/input.h \
 cmd/memray-live/../../lib/replay.h cmd/memray-live/../../lib/util.h
cmd/memray-live/../../lib/collapse.h:
cmd/memray-live/../../lib/replay.h:
cmd/memray-live/../../lib/live.h:
cmd/memray-live/../../lib/stream.h:
cmd/memray-live/../../lib/symbolize.h:
cmd/memray-live/../../lib/input.h:
cmd/memray-live/../../lib/replay.h:
cmd/memray-live/../../lib/util.h:

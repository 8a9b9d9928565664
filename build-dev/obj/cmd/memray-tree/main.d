build-dev/obj/cmd/memray-tree/main.o: cmd/memray-tree/main.c \
 cmd/memray-tree/../../lib/collapse.h cmd/memray-tree/../../lib/replay.h \
 cmd/memray-tree/../../lib/live.h cmd/memray-tree/../../lib/stream.h \
 cmd/memray-tree/../../lib/symbolize.h cmd/memray-tree/../../lib/folded.h \
 cmd/memray-tree/../../lib/ingest.h cmd/memray-tree/../../lib/input.h \
 cmd/memray-tree/../../lib/util.h
cmd/memray-tree/../../lib/collapse.h:
cmd/memray-tree/../../lib/replay.h:
cmd/memray-tree/../../lib/live.h:
cmd/memray-tree/../../lib/stream.h:
cmd/memray-tree/../../lib/symbolize.h:
cmd/memray-tree/../../lib/folded.h:
cmd/memray-tree/../../lib/ingest.h:
cmd/memray-tree/../../lib/input.h:
cmd/memray-tree/../../lib/util.h:

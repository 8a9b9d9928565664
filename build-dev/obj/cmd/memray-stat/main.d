build-dev/obj/cmd/memray-stat/main.o: cmd/memray-stat/main.c \
 cmd/memray-stat/../../lib/collapse.h cmd/memray-stat/../../lib/replay.h \
 cmd/memray-stat/../../lib/live.h cmd/memray-stat/../../lib/stream.h \
 cmd/memray-stat/../../lib/symbolize.h cmd/memray-stat/../../lib/dump.h \
 cmd/memray-stat/../../lib/ingest.h cmd/memray-stat/../../lib/input.h \
 cmd/memray-stat/../../lib/util.h
cmd/memray-stat/../../lib/collapse.h:
cmd/memray-stat/../../lib/replay.h:
cmd/memray-stat/../../lib/live.h:
cmd/memray-stat/../../lib/stream.h:
cmd/memray-stat/../../lib/symbolize.h:
cmd/memray-stat/../../lib/dump.h:
cmd/memray-stat/../../lib/ingest.h:
cmd/memray-stat/../../lib/input.h:
cmd/memray-stat/../../lib/util.h:

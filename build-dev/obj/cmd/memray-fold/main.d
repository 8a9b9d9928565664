build-dev/obj/cmd/memray-fold/main.o: cmd/memray-fold/main.c \
 cmd/memray-fold/../../lib/collapse.h cmd/memray-fold/../../lib/replay.h \
 cmd/memray-fold/../../lib/live.h cmd/memray-fold/../../lib/stream.h \
 cmd/memray-fold/../../lib/symbolize.h cmd/memray-fold/../../lib/ingest.h \
 cmd/memray-fold/../../lib/replay.h cmd/memray-fold/../../lib/symbolize.h \
 cmd/memray-fold/../../lib/util.h
cmd/memray-fold/../../lib/collapse.h:
cmd/memray-fold/../../lib/replay.h:
cmd/memray-fold/../../lib/live.h:
cmd/memray-fold/../../lib/stream.h:
cmd/memray-fold/../../lib/symbolize.h:
cmd/memray-fold/../../lib/ingest.h:
cmd/memray-fold/../../lib/replay.h:
cmd/memray-fold/../../lib/symbolize.h:
cmd/memray-fold/../../lib/util.h:

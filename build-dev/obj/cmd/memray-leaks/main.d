build-dev/obj/cmd/memray-leaks/main.o: cmd/memray-leaks/main.c \
 cmd/memray-leaks/../../lib/collapse.h \
 cmd/memray-leaks/../../lib/replay.h cmd/memray-leaks/../../lib/live.h \
 cmd/memray-leaks/../../lib/stream.h \
 cmd/memray-leaks/../../lib/symbolize.h \
 cmd/memray-leaks/../../lib/ingest.h cmd/memray-leaks/../../lib/util.h
cmd/memray-leaks/../../lib/collapse.h:
cmd/memray-leaks/../../lib/replay.h:
cmd/memray-leaks/../../lib/live.h:
cmd/memray-leaks/../../lib/stream.h:
cmd/memray-leaks/../../lib/symbolize.h:
cmd/memray-leaks/../../lib/ingest.h:
cmd/memray-leaks/../../lib/util.h:

/*
 * phases.h: where a call's time goes, phase by phase, for bench/run.sh. In a
 * build with -DEVL_PHASES a call notes the monotonic clock at each phase's end
 * and, when $EVENTILATOR_PHASES names a file, appends one line to it:
 * "state=41.2 libs=9.8 ..." (microseconds). In every other build the marks
 * are nothing at all.
 */
#ifndef EVENTILATOR_PHASES_H
#define EVENTILATOR_PHASES_H

#ifdef EVL_PHASES
void evl_phase(const char *name); /* the phase `name` ends now; NULL: the clock starts */
void evl_phases_write(void);
#define EVL_PHASES_START() evl_phase(NULL)
#define EVL_PHASE(name) evl_phase(name)
#define EVL_PHASES_WRITE() evl_phases_write()
#else
#define EVL_PHASES_START() ((void)0)
#define EVL_PHASE(name) ((void)0)
#define EVL_PHASES_WRITE() ((void)0)
#endif

#endif

/* Timed waits under libfaketime (the shifted-clock runs, tests/shifted_clocks.py).
 *
 * Python 3.11 waits on a lock with a timeout (threading.Event.wait, queue.get,
 * Lock.acquire) through sem_clockwait(CLOCK_MONOTONIC, deadline), the deadline taken
 * from clock_gettime. libfaketime 0.9.10 shifts clock_gettime but not sem_clockwait, so
 * the kernel waits for a deadline 400 days away: every timed wait became a wait for
 * ever, and a sender's state watch stopped polling after its first read.
 *
 * Preloaded before libfaketime, this turns the deadline the caller computed on the
 * shifted clock into the same remaining time on the kernel's clock.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *abstime) {
    static int (*real)(sem_t *, clockid_t, const struct timespec *);
    if (!real) real = (int (*)(sem_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "sem_clockwait");
    struct timespec seen, kernel, deadline;
    clock_gettime(clock, &seen);                   /* the shifted clock, as the caller saw it */
    syscall(SYS_clock_gettime, clock, &kernel);    /* the kernel's, past libfaketime */
    long long left = (long long)(abstime->tv_sec - seen.tv_sec) * NS + (abstime->tv_nsec - seen.tv_nsec);
    if (left < 0) left = 0;
    long long ns = kernel.tv_nsec + left % NS;
    deadline.tv_sec = kernel.tv_sec + left / NS + ns / NS;
    deadline.tv_nsec = ns % NS;
    return real(sem, clock, &deadline);
}

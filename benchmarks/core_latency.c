/* Core-to-core cache-line round trip (compiled and run by _common.core_round_trip_ns).

   Two threads, pinned to two CPUs, pass a counter back and forth through one cache line; the
   time per round trip is what Hogwild training pays whenever a thread writes a row the other
   core wrote last. On a virtual machine it changes with where the host places the virtual CPUs
   (on the 2-vCPU development VM: 55-85 ns most of the time, about 330 ns for spells of
   seconds), so the thread-scaling benchmark prints it beside its tables.

   usage: core_latency CPU_A CPU_B ROUND_TRIPS   prints the nanoseconds per round trip */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) _Atomic long counter;
static long round_trips;

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void* answer(void* cpu) {
    pin(*(int*)cpu); /* main checked that this CPU can be used */
    for (long i = 0; i < round_trips; i++) {
        while (atomic_load_explicit(&counter, memory_order_acquire) != 2 * i + 1) {}
        atomic_store_explicit(&counter, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CPU_A CPU_B ROUND_TRIPS\n", argv[0]);
        return 2;
    }
    int first = atoi(argv[1]), second = atoi(argv[2]);
    round_trips = atol(argv[3]);
    if (round_trips < 1) return 2;
    if (first == second || pin(second) != 0 || pin(first) != 0) {
        fprintf(stderr, "cannot run on CPUs %d and %d\n", first, second);
        return 1;
    }
    pthread_t other;
    if (pthread_create(&other, NULL, answer, &second) != 0) return 1;
    struct timespec start, stop;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < round_trips; i++) {
        atomic_store_explicit(&counter, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&counter, memory_order_acquire) != 2 * i + 2) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &stop);
    pthread_join(other, NULL);
    double seconds = (double)(stop.tv_sec - start.tv_sec) + 1e-9 * (double)(stop.tv_nsec - start.tv_nsec);
    printf("%.1f\n", 1e9 * seconds / (double)round_trips);
    return 0;
}

/* pool — worker threads for data-parallel loops (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct dsv4_pool {
    int threads;                 /* workers + the calling thread */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;                /* bumped for every job */
    int quit;
    int busy;                    /* workers still in the current job */
    /* the current job */
    dsv4_pool_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;
};

static void run_chunks(struct dsv4_pool *p, int tid)
{
    for (;;) {
        int64_t i0 = atomic_fetch_add(&p->next, p->chunk);
        if (i0 >= p->n)
            return;
        int64_t i1 = i0 + p->chunk < p->n ? i0 + p->chunk : p->n;
        p->fn(p->ctx, i0, i1, tid);
    }
}

struct worker_arg { struct dsv4_pool *p; int tid; };

static void *worker(void *arg)
{
    struct dsv4_pool *p = ((struct worker_arg *)arg)->p;
    int tid = ((struct worker_arg *)arg)->tid;
    free(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int dsv4_pool_new(dsv4_pool **out, int threads, dsv4_err *err)
{
    *out = NULL;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > 1024)
        return dsv4_err_set(err, DSV4_E_INVALID, "thread count %d is too large (at most 1024)", threads);
    struct dsv4_pool *p = calloc(1, sizeof *p);
    if (!p)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tids = calloc((size_t)threads, sizeof *p->tids);
    if (!p->tids) {
        dsv4_pool_free(p);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    for (int i = 1; i < threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (!a || pthread_create(&p->tids[i], NULL, worker, (a->p = p, a->tid = i, a))) {
            free(a);
            p->threads = i;
            dsv4_pool_free(p);
            return dsv4_err_set(err, DSV4_E_NOMEM, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return 0;
}

void dsv4_pool_free(dsv4_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++)
        pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tids);
    free(p);
}

int dsv4_pool_threads(const dsv4_pool *p)
{
    return p ? p->threads : 1;
}

void dsv4_pool_for(dsv4_pool *p, int64_t n, int64_t grain, dsv4_pool_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int threads = p ? p->threads : 1;
    /* About four chunks per thread balances uneven items without much
     * counter traffic. */
    int64_t chunk = (n + 4 * threads - 1) / (4 * threads);
    if (chunk < grain)
        chunk = grain;
    if (threads == 1 || chunk >= n) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

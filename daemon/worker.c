/* SPDX-License-Identifier: MIT */
/* A worker thread and its jobs: see worker.h. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

struct queue {
	struct smpl_job *head, **tail;
};

struct smpl_worker {
	char name[16];
	bool inline_jobs;
	pthread_t thread;
	bool started, stopping;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a job to run, or stop */
	pthread_cond_t ran;		/* a job ran (for drain) */
	struct queue todo;		/* waiting to run */
	struct queue finished;		/* ran, waiting for done() on the loop */
	unsigned int pending;		/* submitted, done() not called yet */
	int efd;			/* tells the loop that jobs finished */
	sd_event_source *source;
};

static void push(struct queue *q, struct smpl_job *j)
{
	j->next = NULL;
	*q->tail = j;
	q->tail = &j->next;
}

static struct smpl_job *pop_all(struct queue *q)
{
	struct smpl_job *all = q->head;

	q->head = NULL;
	q->tail = &q->head;
	return all;
}

static void *worker_main(void *arg)
{
	struct smpl_worker *w = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct smpl_job *j;

		while (!w->todo.head && !w->stopping)
			pthread_cond_wait(&w->wake, &w->lock);
		if (!w->todo.head)
			break;
		j = w->todo.head;
		w->todo.head = j->next;
		if (!w->todo.head)
			w->todo.tail = &w->todo.head;
		pthread_mutex_unlock(&w->lock);
		j->run(j);
		pthread_mutex_lock(&w->lock);
		push(&w->finished, j);
		pthread_cond_broadcast(&w->ran);
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter is full: the loop wakes anyway */
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* On the loop: done() of every job that ran, in order. */
static void finish(struct smpl_worker *w)
{
	struct smpl_job *j;

	pthread_mutex_lock(&w->lock);
	j = pop_all(&w->finished);
	pthread_mutex_unlock(&w->lock);
	while (j) {
		struct smpl_job *next = j->next;

		w->pending--;
		j->done(j);		/* may free j, may submit more */
		j = next;
	}
}

static int on_finished(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	uint64_t n;

	(void)s, (void)revents;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* nothing to read: another wake-up took it */
	}
	finish(userdata);
	return 0;
}

int smpl_worker_new(sd_event *event, const char *name, bool inline_jobs,
		    struct smpl_worker **ret)
{
	struct smpl_worker *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->efd = -1;
	w->inline_jobs = inline_jobs;
	w->todo.tail = &w->todo.head;
	w->finished.tail = &w->finished.head;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	pthread_cond_init(&w->ran, NULL);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto fail;
	}
	r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, on_finished, w);
	if (r < 0)
		goto fail;
	if (!inline_jobs) {
		r = -pthread_create(&w->thread, NULL, worker_main, w);
		if (r < 0)
			goto fail;
		w->started = true;
		(void)pthread_setname_np(w->thread, w->name);
	}
	*ret = w;
	return 0;
fail:
	smpl_worker_free(w);
	return r;
}

void smpl_worker_submit(struct smpl_worker *w, struct smpl_job *j)
{
	uint64_t one = 1;

	w->pending++;
	if (w->inline_jobs) {
		j->run(j);
		push(&w->finished, j);
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter is full: the loop wakes anyway */
		}
		return;
	}
	pthread_mutex_lock(&w->lock);
	push(&w->todo, j);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

unsigned int smpl_worker_pending(const struct smpl_worker *w)
{
	return w ? w->pending : 0;
}

void smpl_worker_drain(struct smpl_worker *w)
{
	if (!w)
		return;
	while (w->pending > 0) {
		pthread_mutex_lock(&w->lock);
		while (!w->finished.head && w->started)
			pthread_cond_wait(&w->ran, &w->lock);
		pthread_mutex_unlock(&w->lock);
		finish(w);
		if (!w->started && !w->finished.head)
			break;
	}
}

void smpl_worker_free(struct smpl_worker *w)
{
	if (!w)
		return;
	smpl_worker_drain(w);
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	sd_event_source_disable_unref(w->source);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->wake);
	pthread_cond_destroy(&w->ran);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

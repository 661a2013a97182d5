/* The exact index's search (hybrec.vectors.exact_search), fused: score, filter, keep, stop, rank, in one call.
 *
 * The matrix is sorted by row norm, largest first, and stored in panels of PANEL positions: panel p is a [dim, PANEL]
 * row-major block holding positions p * PANEL ... (p + 1) * PANEL - 1, so one panel is 8 KB of contiguous halves or
 * 16 KB of floats (dim 64; see panel_t below) and a query's scores over it are a sum of `dim` scaled runs of PANEL
 * values (vertical SIMD, no horizontal sums). The last panel is padded with zero columns. The queries of a batch go through the matrix panel by panel, in
 * groups that share each load (GROUP below), so a panel comes from memory once per batch and from the L1 cache after
 * that.
 *
 * Each query keeps, as it goes:
 *   - a min-heap of the k best float32 scores of its allowed rows so far; its top is the running k-th best, `kth`;
 *   - the positions and float32 scores of every allowed row scoring at least `kth - 2 * slack` when read (the
 *     candidates; `kth` only grows, so they include every row within 2 * slack of the final k-th best);
 * and stops after the first block past which no row can reach its top k: a row at position p scores at most
 * |q| * norms[p] * (1 + relative error), and the k best so far score at least `kth - slack` exactly. `slack` bounds
 * how far a float32 score is from the exact one: relative_error * |q| * (largest row norm).
 *
 * Rows a query's filter rejects (allowed[row] == 0) or that it excludes never count. Then the candidates within
 * 2 * slack of the final k-th best are scored exactly: products of float32 values are exact in float64, summed in
 * order of the dimensions and rounded to float32, the arithmetic of exact_search.exact_scores (numpy's cumulative
 * sum, which is sequential), and ranked by that score, ties by lower row. So answers are the numpy scan's, bit for
 * bit. Compiled by hybrec.vectors.scan_kernel and called through ctypes, which releases the GIL for the call.
 */

#include <math.h>
#include <stdint.h>
#if defined(__F16C__) && !defined(FLOAT_PANELS)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define PANEL 64 /* positions per panel: a multiple of every vector width below */
#define BLOCK 256 /* positions read between two stop checks */
#define LANES 16  /* scores tested against a threshold at once */

/* The machine's own vector width, and how many queries share each load of a panel: as many as keep their
 * accumulators (GROUP * PANEL / WIDTH vectors) in registers. A vector wider than the target's registers is no
 * shortcut: GCC lowers a 64-byte vector on an AVX2 target through the stack, ten times slower than 32-byte ones
 * (measured on a 2-core Zen 3). Overridable (-DWIDTH=.. -DGROUP=..) for measurements. */
#if !defined(WIDTH)
#if defined(__AVX512F__)
#define WIDTH 16 /* 32 zmm registers: 4 queries x 4 accumulators */
#define GROUP 4
#elif defined(__AVX__)
#define WIDTH 8 /* 16 ymm registers: 2 queries x 8 accumulators */
#define GROUP 2
#else
#define WIDTH 4
#define GROUP 1
#endif
#endif
#define PER_ROW (PANEL / WIDTH)

typedef float vec __attribute__((vector_size(WIDTH * sizeof(float)))); /* GCC/clang vectors */

/* The panels hold half-precision floats where the CPU converts them in one instruction (F16C, with AVX): the scan
 * reads the matrix from memory once per batch, and half the bytes is close to half the time. The caller learns the
 * type from hybrec_panel_bytes and widens its error bound by the rounding (scan_kernel.HALF_ROUNDING). */
#if defined(__F16C__) && !defined(FLOAT_PANELS)
typedef uint16_t panel_t;
static inline __attribute__((always_inline)) vec load_vec(const panel_t *p) {
#if WIDTH == 16 && defined(__AVX512F__)
  return (vec)_mm512_cvtph_ps(_mm256_load_si256((const __m256i *)p));
#elif WIDTH == 8
  return (vec)_mm256_cvtph_ps(_mm_load_si128((const __m128i *)p));
#elif WIDTH == 4
  return (vec)_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p));
#else /* a width this target has no register for (measurements, tests): four at a time */
  float wide[WIDTH];
  for (int i = 0; i < WIDTH; i += 4) _mm_storeu_ps(wide + i, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(p + i))));
  vec v;
  memcpy(&v, wide, sizeof v);
  return v;
#endif
}
#else
typedef float panel_t;
static inline __attribute__((always_inline)) vec load_vec(const panel_t *p) {
  return *(const vec *)__builtin_assume_aligned(p, sizeof(vec));
}
#endif

int hybrec_panel_bytes(void) { return (int)sizeof(panel_t); }

typedef struct {
  const float *query;
  float *heap; /* min-heap of the k best scores so far */
  int64_t k, filled, count, room, excluded_at, excluded_end;
  double slack, stop_scale;
  const uint8_t *allowed;
  const int64_t *excluded; /* excluded positions, ascending */
  int64_t *positions;      /* candidates: `count` of `room` */
  float *scores;
  float threshold; /* float32 lower bound of kth - 2 * slack, never above it (-inf until the heap is full) */
  int failed;      /* out of memory */
} Query;

typedef struct {
  double score;
  int64_t row;
} Ranked;

/* Scores of `g` queries over one panel (64-byte aligned: see scan_kernel.panels_of), each panel vector loaded once
 * for all of them. `g` is a constant where this is inlined, so the accumulators are registers. */
static inline __attribute__((always_inline)) void score_queries(const panel_t *restrict panel, int64_t dim, int g,
                                                                const float *const *queries, float *const *out) {
  vec acc[GROUP][PER_ROW];
#pragma GCC unroll 16
  for (int i = 0; i < g; i++)
#pragma GCC unroll 16
    for (int j = 0; j < PER_ROW; j++) acc[i][j] = (vec){0};
  for (int64_t d = 0; d < dim; d++) {
    const panel_t *row = panel + d * PANEL;
    float x[GROUP];
#pragma GCC unroll 16
    for (int i = 0; i < g; i++) x[i] = queries[i][d];
#pragma GCC unroll 16
    for (int j = 0; j < PER_ROW; j++) {
      const vec m = load_vec(row + j * WIDTH);
#pragma GCC unroll 16
      for (int i = 0; i < g; i++) acc[i][j] += x[i] * m;
    }
  }
  for (int i = 0; i < g; i++) memcpy(out[i], acc[i], sizeof acc[i]);
}

static void score_group(const panel_t *restrict panel, int64_t dim, const float *const *queries, float *const *out) {
  score_queries(panel, dim, GROUP, queries, out);
}

static void score_one(const panel_t *restrict panel, int64_t dim, const float *query, float *out) {
  score_queries(panel, dim, 1, &query, &out);
}

/* Each active query's scores over the block of positions start ... start + length into its row of `scores`. */
static void score_block(const panel_t *panels, int64_t dim, int64_t start, int64_t length, const Query *state,
                        const int64_t *active, int64_t n_active, float *scores) {
  for (int64_t at = 0; at < length; at += PANEL) {
    const panel_t *panel = panels + (start + at) * dim;
    int64_t a = 0;
    for (; a + GROUP <= n_active; a += GROUP) {
      const float *queries[GROUP];
      float *out[GROUP];
      for (int g = 0; g < GROUP; g++) {
        queries[g] = state[active[a + g]].query;
        out[g] = scores + (a + g) * BLOCK + at;
      }
      score_group(panel, dim, queries, out);
    }
    for (; a < n_active; a++) score_one(panel, dim, state[active[a]].query, scores + a * BLOCK + at);
  }
}

static void sift_down(float *heap, int64_t size, int64_t at) {
  const float value = heap[at];
  for (;;) {
    int64_t child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && heap[child + 1] < heap[child]) child++;
    if (heap[child] >= value) break;
    heap[at] = heap[child];
    at = child;
  }
  heap[at] = value;
}

static void sift_up(float *heap, int64_t at) {
  const float value = heap[at];
  while (at > 0) {
    int64_t parent = (at - 1) / 2;
    if (heap[parent] <= value) break;
    heap[at] = heap[parent];
    at = parent;
  }
  heap[at] = value;
}

/* kth - 2 * slack as a float32 never above the float64 value (-inf until the heap holds k scores). */
static float lower_threshold(const Query *q) {
  if (q->filled < q->k) return -INFINITY;
  const double bound = (double)q->heap[0] - 2.0 * q->slack;
  float low = (float)bound;
  if ((double)low > bound) low = nextafterf(low, -INFINITY);
  return low;
}

/* Room for one more candidate: drop those below the current threshold, and grow if more than half are left. */
static int make_room(Query *q) {
  int64_t kept = 0;
  for (int64_t i = 0; i < q->count; i++) {
    if (q->scores[i] >= q->threshold) {
      q->positions[kept] = q->positions[i];
      q->scores[kept] = q->scores[i];
      kept++;
    }
  }
  q->count = kept;
  if (kept <= q->room / 2) return 1;
  const int64_t room = 2 * q->room;
  int64_t *positions = realloc(q->positions, sizeof(int64_t) * (size_t)room);
  if (positions == NULL) return 0;
  q->positions = positions;
  float *scores = realloc(q->scores, sizeof(float) * (size_t)room);
  if (scores == NULL) return 0;
  q->scores = scores;
  q->room = room;
  return 1;
}

/* One row at `position` scoring `score`, at or above the query's threshold when it was read. */
static void offer(Query *q, const int64_t *order, int64_t position, float score) {
  if (q->allowed != NULL && !q->allowed[order[position]]) return;
  while (q->excluded_at < q->excluded_end && q->excluded[q->excluded_at] < position) q->excluded_at++;
  if (q->excluded_at < q->excluded_end && q->excluded[q->excluded_at] == position) return;
  if (q->filled < q->k) {
    q->heap[q->filled++] = score;
    sift_up(q->heap, q->filled - 1);
    if (q->filled == q->k) q->threshold = lower_threshold(q);
  } else if (score > q->heap[0]) {
    q->heap[0] = score;
    sift_down(q->heap, q->k, 0);
    q->threshold = lower_threshold(q);
  }
  if (score < q->threshold) return;
  if (q->count == q->room && !make_room(q)) {
    q->failed = 1;
    return;
  }
  q->positions[q->count] = position;
  q->scores[q->count] = score;
  q->count++;
}

/* Offer the rows of one block that reach the query's threshold; tested LANES scores at a time (few pass). */
static void keep_block(Query *q, const float *scores, int64_t start, int64_t length, const int64_t *order) {
  for (int64_t base = 0; base < length && !q->failed; base += LANES) {
    const int64_t end = base + LANES < length ? base + LANES : length;
    int any = 0;
    for (int64_t i = base; i < end; i++) any |= scores[i] >= q->threshold;
    if (!any) continue;
    for (int64_t i = base; i < end && !q->failed; i++)
      if (scores[i] >= q->threshold) offer(q, order, start + i, scores[i]);
  }
}

static int by_position(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int by_score_then_row(const void *a, const void *b) {
  const Ranked *x = a, *y = b;
  if (x->score != y->score) return x->score < y->score ? 1 : -1;
  return (x->row > y->row) - (x->row < y->row);
}

/* The query's candidates within 2 * slack of its k-th best, scored exactly and ranked; returns how many it wrote. */
static int64_t rank(const Query *q, const float *vectors, int64_t dim, const int64_t *order, Ranked *ranked,
                    int64_t *out_rows, float *out_scores) {
  if (q->filled == 0) return 0;
  const double close = (double)q->heap[0] - 2.0 * q->slack;
  int64_t m = 0;
  for (int64_t i = 0; i < q->count; i++) {
    if ((double)q->scores[i] < close) continue;
    const int64_t row = order[q->positions[i]];
    const float *v = vectors + row * dim;
    double sum = (double)v[0] * (double)q->query[0];
    for (int64_t d = 1; d < dim; d++) sum += (double)v[d] * (double)q->query[d]; /* in order: no reassociation */
    ranked[m].score = (double)(float)sum;
    ranked[m].row = row;
    m++;
  }
  qsort(ranked, (size_t)m, sizeof(Ranked), by_score_then_row);
  const int64_t found = m < q->k ? m : q->k;
  for (int64_t i = 0; i < found; i++) {
    out_rows[i] = ranked[i].row;
    out_scores[i] = (float)ranked[i].score;
  }
  return found;
}

/* The top k[j] allowed rows of each query j, best first, into out_rows / out_scores ([n_queries, k_max]), their
 * number into out_count and the positions each query read into out_read. Returns 0, or -1 when memory ran out. */
int hybrec_exact_search(const void *panels, const float *vectors, int64_t dim, int64_t n, const double *norms,
                        const int64_t *order, const int64_t *position, double relative_error, const float *queries,
                        int64_t n_queries, const int64_t *k, const uint8_t *const *allowed,
                        const int64_t *excluded_start, const int64_t *excluded_rows, int64_t k_max,
                        int64_t *out_rows, float *out_scores, int64_t *out_count, int64_t *out_read) {
  const size_t many = (size_t)(n_queries > 0 ? n_queries : 1);
  const int64_t n_excluded = excluded_start[n_queries];
  int64_t heap_size = 1;
  for (int64_t j = 0; j < n_queries; j++) heap_size += k[j];
  float *heap = malloc(sizeof(float) * (size_t)heap_size);
  Query *state = calloc(many, sizeof(Query));
  int64_t *active = malloc(sizeof(int64_t) * many);
  float *block_scores = malloc(sizeof(float) * BLOCK * many);
  int64_t *excluded = malloc(sizeof(int64_t) * (size_t)(n_excluded > 0 ? n_excluded : 1));
  int status = heap && state && active && block_scores && excluded ? 0 : -1;
  const double max_norm = n > 0 ? norms[0] : 0.0;
  int64_t n_active = 0, heap_at = 0;
  for (int64_t j = 0; j < n_queries && status == 0; j++) {
    Query *q = &state[j];
    q->query = queries + j * dim;
    double squares = 0.0;
    for (int64_t d = 0; d < dim; d++) squares += (double)q->query[d] * (double)q->query[d];
    const double norm = sqrt(squares);
    q->heap = heap + heap_at;
    heap_at += k[j];
    q->k = k[j];
    q->slack = relative_error * norm * max_norm;
    q->stop_scale = norm * (1.0 + relative_error);
    q->allowed = allowed[j];
    q->excluded = excluded;
    q->excluded_at = excluded_start[j];
    q->excluded_end = excluded_start[j + 1];
    for (int64_t e = q->excluded_at; e < q->excluded_end; e++) excluded[e] = position[excluded_rows[e]];
    qsort(excluded + q->excluded_at, (size_t)(q->excluded_end - q->excluded_at), sizeof(int64_t), by_position);
    q->threshold = -INFINITY;
    q->room = 64 + 4 * k[j];
    q->positions = malloc(sizeof(int64_t) * (size_t)q->room);
    q->scores = malloc(sizeof(float) * (size_t)q->room);
    if (q->positions == NULL || q->scores == NULL) status = -1;
    out_read[j] = 0;
    out_count[j] = 0;
    if (k[j] > 0) active[n_active++] = j;
  }

  for (int64_t start = 0; start < n && n_active > 0 && status == 0; start += BLOCK) {
    const int64_t length = n - start < BLOCK ? n - start : BLOCK;
    score_block(panels, dim, start, length, state, active, n_active, block_scores);
    int64_t still = 0;
    for (int64_t a = 0; a < n_active; a++) {
      const int64_t j = active[a];
      Query *q = &state[j];
      keep_block(q, block_scores + a * BLOCK, start, length, order);
      if (q->failed) status = -1;
      out_read[j] = start + length;
      const int settled = q->filled == q->k && norms[start + length] * q->stop_scale < (double)q->heap[0] - q->slack;
      if (!settled) active[still++] = j;
    }
    n_active = still;
  }

  int64_t most = 1;
  for (int64_t j = 0; j < n_queries && status == 0; j++) most = state[j].count > most ? state[j].count : most;
  Ranked *ranked = status == 0 ? malloc(sizeof(Ranked) * (size_t)most) : NULL;
  if (ranked == NULL) status = -1;
  for (int64_t j = 0; j < n_queries && status == 0; j++)
    out_count[j] = rank(&state[j], vectors, dim, order, ranked, out_rows + j * k_max, out_scores + j * k_max);
  free(ranked);
  if (state != NULL)
    for (int64_t j = 0; j < n_queries; j++) {
      free(state[j].positions);
      free(state[j].scores);
    }
  free(heap);
  free(state);
  free(active);
  free(block_scores);
  free(excluded);
  return status;
}

/* The scan worker (hybrec.vectors.scan_worker): batches queued by hybrec_submit are run by hybrec_worker, which a
 * thread calls once and which never returns to Python until hybrec_worker_stop, so the worker never needs the GIL. A
 * Python thread that ran each batch needed it to wake and after each call, and an event loop busy answering
 * requests held it, so the loop and the scan took turns instead of running together. Each job's end is written to
 * its eventfd, which the event loop watches. */
#include <pthread.h>
#include <unistd.h>
typedef struct Job {
  const void *panels;
  const float *vectors;
  int64_t dim, n;
  const double *norms;
  const int64_t *order, *position;
  double relative_error;
  const float *queries;
  int64_t n_queries;
  const int64_t *k;
  const uint8_t *const *allowed;
  const int64_t *excluded_start, *excluded_rows;
  int64_t k_max;
  int64_t *out_rows;
  float *out_scores;
  int64_t *out_count, *out_read;
  int64_t fd;
  int32_t status, done, written; /* done: the results are complete; written: the eventfd write is over */
  struct Job *next;
} Job;
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static Job *q_head, *q_tail;
static int q_stop;
void hybrec_submit(Job *job) {
  pthread_mutex_lock(&q_mu);
  job->next = NULL;
  if (q_tail) q_tail->next = job; else q_head = job;
  q_tail = job;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
}
void hybrec_worker(void) {
  for (;;) {
    pthread_mutex_lock(&q_mu);
    while (!q_head && !q_stop) pthread_cond_wait(&q_cv, &q_mu);
    Job *job = q_head;
    if (!job) { pthread_mutex_unlock(&q_mu); return; }
    q_head = job->next;
    if (!q_head) q_tail = NULL;
    pthread_mutex_unlock(&q_mu);
    job->status = hybrec_exact_search(job->panels, job->vectors, job->dim, job->n, job->norms, job->order, job->position,
                                      job->relative_error, job->queries, job->n_queries, job->k, job->allowed,
                                      job->excluded_start, job->excluded_rows, job->k_max, job->out_rows,
                                      job->out_scores, job->out_count, job->out_read);
    __atomic_store_n(&job->done, 1, __ATOMIC_RELEASE); /* the results are complete before the flag reads 1 */
    uint64_t one = 1;
    ssize_t w = write((int)job->fd, &one, sizeof one); /* after done: the wake-up finds the job done */
    (void)w;
    /* After the write: until this reads 1 the eventfd must stay open (a closed number may be another file's by
     * then). The job's memory is the caller's until then too: nothing here touches it afterwards. */
    __atomic_store_n(&job->written, 1, __ATOMIC_RELEASE);
  }
}
void hybrec_worker_stop(void) {
  pthread_mutex_lock(&q_mu);
  q_stop = 1;
  pthread_cond_broadcast(&q_cv);
  pthread_mutex_unlock(&q_mu);
}

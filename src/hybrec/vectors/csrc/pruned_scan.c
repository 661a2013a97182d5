/* The pruned scan of the exact index (hybrec.vectors.exact_search), fused: score, filter, keep, stop, in one pass.
 *
 * The matrix is sorted by row norm, largest first, and stored in panels of PANEL positions: panel p is a [dim, PANEL]
 * row-major block holding positions p * PANEL ... (p + 1) * PANEL - 1, so one panel is 16 KB of contiguous floats
 * (dim 64) and a query's scores over it are a sum of `dim` scaled runs of PANEL floats (vertical SIMD, no horizontal
 * sums). The last panel is padded with zero columns. The queries of a batch go through the matrix panel by panel, in
 * groups of four that share each load, so a panel comes from memory once per batch and from the L1 cache after that.
 *
 * Each query keeps, as it goes:
 *   - a min-heap of the k best float32 scores of its allowed rows so far; its top is the running k-th best, `kth`;
 *   - the positions and float32 scores of every allowed row scoring at least `kth - 2 * slack` when read (the
 *     candidates; `kth` only grows, so they include every row within 2 * slack of the final k-th best);
 * and stops after the first block past which no row can reach its top k: a row at position p scores at most
 * |q| * norms[p] * (1 + relative error), and the k best so far score at least `kth - slack` exactly.
 *
 * Rows a query's filter rejects (allowed[row] == 0) or that it excludes (its ascending excluded positions) never
 * count. The exact ranking of the candidates happens in Python (exact_search._BatchScan), with the same float64
 * arithmetic as the numpy scan, so an answer does not depend on which of the two scans found the candidates.
 *
 * A query with more than `capacity` candidates at once (rows tied within 2 * slack of its k-th best) stops with
 * out_count = -1; the caller runs it again with a capacity of n. Returns 0, or -1 when memory ran out. Compiled by
 * hybrec.vectors.scan_kernel and called through ctypes, which releases the GIL for the call.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PANEL 64  /* positions per panel: 4 vectors of 16 floats */
#define BLOCK 256 /* positions read between two stop checks */
#define LANES 16  /* scores tested against a threshold at once */

typedef float v16 __attribute__((vector_size(64), aligned(4))); /* GCC/clang vectors: AVX-512, or split narrower */

typedef struct {
  const float *query;
  float *heap; /* min-heap of the k best scores so far */
  int64_t k, filled, count, excluded_at, excluded_end;
  double slack, stop_scale;
  const uint8_t *allowed;
  int64_t *positions;
  float *scores;
  float threshold; /* float32 lower bound of kth - 2 * slack, never above it (-inf until the heap is full) */
  int overflow;
} Query;

static inline v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Scores of four queries over one panel: each panel value is loaded once for the four; 16 accumulators. */
static void score_four(const float *restrict panel, int64_t dim, const float *const *queries, float *const *out) {
  v16 a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0}, a13 = {0};
  v16 a20 = {0}, a21 = {0}, a22 = {0}, a23 = {0}, a30 = {0}, a31 = {0}, a32 = {0}, a33 = {0};
  const float *q0 = queries[0], *q1 = queries[1], *q2 = queries[2], *q3 = queries[3];
  for (int64_t d = 0; d < dim; d++) {
    const float *row = panel + d * PANEL;
    const v16 m0 = load16(row), m1 = load16(row + 16), m2 = load16(row + 32), m3 = load16(row + 48);
    const float x0 = q0[d], x1 = q1[d], x2 = q2[d], x3 = q3[d];
    a00 += x0 * m0, a01 += x0 * m1, a02 += x0 * m2, a03 += x0 * m3;
    a10 += x1 * m0, a11 += x1 * m1, a12 += x1 * m2, a13 += x1 * m3;
    a20 += x2 * m0, a21 += x2 * m1, a22 += x2 * m2, a23 += x2 * m3;
    a30 += x3 * m0, a31 += x3 * m1, a32 += x3 * m2, a33 += x3 * m3;
  }
  const v16 all[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int g = 0; g < 4; g++) memcpy(out[g], all[g], sizeof all[g]);
}

/* Scores of one query over one panel (the queries left over from the groups of four). */
static void score_one(const float *restrict panel, int64_t dim, const float *restrict query, float *restrict out) {
  v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
  for (int64_t d = 0; d < dim; d++) {
    const float *row = panel + d * PANEL;
    const float x = query[d];
    a0 += x * load16(row), a1 += x * load16(row + 16), a2 += x * load16(row + 32), a3 += x * load16(row + 48);
  }
  const v16 all[4] = {a0, a1, a2, a3};
  memcpy(out, all, sizeof all);
}

/* Each active query's scores over the block of positions start ... start + length into its row of `scores`. */
static void score_block(const float *panels, int64_t dim, int64_t start, int64_t length, const Query *state,
                        const int64_t *active, int64_t n_active, float *scores) {
  for (int64_t at = 0; at < length; at += PANEL) {
    const float *panel = panels + (start + at) * dim;
    int64_t a = 0;
    for (; a + 4 <= n_active; a += 4) {
      const float *queries[4];
      float *out[4];
      for (int g = 0; g < 4; g++) {
        queries[g] = state[active[a + g]].query;
        out[g] = scores + (a + g) * BLOCK + at;
      }
      score_four(panel, dim, queries, out);
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

/* Drop the candidates below the current threshold; whether the buffer is still more than half full. */
static int still_full(Query *q, int64_t capacity) {
  int64_t kept = 0;
  for (int64_t i = 0; i < q->count; i++) {
    if (q->scores[i] >= q->threshold) {
      q->positions[kept] = q->positions[i];
      q->scores[kept] = q->scores[i];
      kept++;
    }
  }
  q->count = kept;
  return kept > capacity / 2;
}

/* One row at `position` scoring `score`, at or above the query's threshold when it was read. */
static void offer(Query *q, const int64_t *order, const int64_t *excluded, int64_t position, float score,
                  int64_t capacity) {
  if (q->allowed != NULL && !q->allowed[order[position]]) return;
  while (q->excluded_at < q->excluded_end && excluded[q->excluded_at] < position) q->excluded_at++;
  if (q->excluded_at < q->excluded_end && excluded[q->excluded_at] == position) return;
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
  if (q->count == capacity && still_full(q, capacity)) {
    q->overflow = 1;
    return;
  }
  q->positions[q->count] = position;
  q->scores[q->count] = score;
  q->count++;
}

/* Offer the rows of one block that reach the query's threshold; tested LANES scores at a time (few pass). */
static void keep_block(Query *q, const float *scores, int64_t start, int64_t length, const int64_t *order,
                       const int64_t *excluded, int64_t capacity) {
  for (int64_t base = 0; base < length && !q->overflow; base += LANES) {
    const int64_t end = base + LANES < length ? base + LANES : length;
    int any = 0;
    for (int64_t i = base; i < end; i++) any |= scores[i] >= q->threshold;
    if (!any) continue;
    for (int64_t i = base; i < end && !q->overflow; i++)
      if (scores[i] >= q->threshold) offer(q, order, excluded, start + i, scores[i], capacity);
  }
}

int hybrec_pruned_scan(const float *panels, int64_t dim, int64_t n, const double *norms, const int64_t *order,
                       const float *queries, int64_t n_queries, const int64_t *k, const double *slack,
                       const double *stop_scale, const uint8_t *const *allowed, const int64_t *excluded_start,
                       const int64_t *excluded, int64_t capacity, int64_t *out_count, int64_t *out_positions,
                       float *out_scores, int64_t *out_read) {
  const size_t many = (size_t)(n_queries > 0 ? n_queries : 1);
  int64_t heap_size = 1;
  for (int64_t j = 0; j < n_queries; j++) heap_size += k[j];
  float *heap = malloc(sizeof(float) * (size_t)heap_size);
  Query *state = malloc(sizeof(Query) * many);
  int64_t *active = malloc(sizeof(int64_t) * many);
  float *block_scores = malloc(sizeof(float) * BLOCK * many);
  if (heap == NULL || state == NULL || active == NULL || block_scores == NULL) {
    free(heap);
    free(state);
    free(active);
    free(block_scores);
    return -1;
  }
  int64_t n_active = 0, heap_at = 0;
  for (int64_t j = 0; j < n_queries; j++) {
    Query *q = &state[j];
    q->query = queries + j * dim;
    q->heap = heap + heap_at;
    heap_at += k[j];
    q->k = k[j];
    q->filled = q->count = 0;
    q->excluded_at = excluded_start[j];
    q->excluded_end = excluded_start[j + 1];
    q->slack = slack[j];
    q->stop_scale = stop_scale[j];
    q->allowed = allowed[j];
    q->positions = out_positions + j * capacity;
    q->scores = out_scores + j * capacity;
    q->threshold = -INFINITY;
    q->overflow = 0;
    out_read[j] = 0;
    if (k[j] > 0) active[n_active++] = j;
  }

  for (int64_t start = 0; start < n && n_active > 0; start += BLOCK) {
    const int64_t length = n - start < BLOCK ? n - start : BLOCK;
    score_block(panels, dim, start, length, state, active, n_active, block_scores);
    int64_t still = 0;
    for (int64_t a = 0; a < n_active; a++) {
      const int64_t j = active[a];
      Query *q = &state[j];
      keep_block(q, block_scores + a * BLOCK, start, length, order, excluded, capacity);
      out_read[j] = start + length;
      const int settled = q->filled == q->k && norms[start + length] * q->stop_scale < (double)q->heap[0] - q->slack;
      if (!settled && !q->overflow) active[still++] = j;
    }
    n_active = still;
  }
  for (int64_t j = 0; j < n_queries; j++) out_count[j] = state[j].overflow ? -1 : state[j].count;
  free(heap);
  free(state);
  free(active);
  free(block_scores);
  return 0;
}

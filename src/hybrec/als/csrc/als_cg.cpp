// Fused per-row solvers for alternating least squares (hybrec.als).
//
// One ALS half-step solves, for every row u of a sparse matrix, the k x k system
//     (G + reg_u I + sum_i a_ui y_i y_i^T) x_u = sum_i b_ui y_i
// where i runs over the row's nonzeros, G is a shared Gramian (w0 * Y^T Y for implicit feedback, 0 for ALS-WR),
// a_ui / b_ui are per-nonzero weights prepared in Python and Y are the fixed factors of the other side.
//
// cg_solve: a few conjugate-gradient steps warm-started from the current x_u (Takacs, Pilaszy & Tikk 2011,
//           "Applications of the conjugate gradient method for implicit feedback collaborative filtering").
// cholesky_solve: the exact solve (Hu, Koren & Volinsky 2008), accumulating in float, factorising in double.
//
// Rows are independent, so both run in parallel over rows (OpenMP, torch's thread count); each row's work is O(nnz_u k + k^2) per CG step,
// without materialising per-nonzero k x k products.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <tuple>
#include <vector>

namespace {

// K > 0: the factor count is a compile-time constant (fully vectorised loops); K == 0: runtime k.
template <int K>
inline float dot(const float* __restrict a, const float* __restrict b, int64_t k) {
  const int64_t n = K > 0 ? K : k;
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

template <int K>
inline void axpy(float alpha, const float* __restrict x, float* __restrict y, int64_t k) {
  const int64_t n = K > 0 ? K : k;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// out = (G + reg I) v + sum_n a_n (y_n . v) y_n over the row's nonzeros.
template <int K>
inline void apply_system(const float* G, float reg, const int32_t* idx, const float* aw, int64_t start, int64_t end,
                         const float* Y, int64_t k, const float* v, float* out) {
  for (int64_t j = 0; j < k; ++j) out[j] = dot<K>(G + j * k, v, k) + reg * v[j];
  for (int64_t n = start; n < end; ++n) {
    const float* y = Y + static_cast<int64_t>(idx[n]) * k;
    axpy<K>(aw[n] * dot<K>(y, v, k), y, out, k);
  }
}

// Rows are dealt out dynamically: row lengths follow a power law, so equal static shares would leave threads idle.
// A handful of rows (a real-time fold-in) runs on the calling thread: waking a team costs more than the work.
template <typename F>
void for_each_row(int64_t rows, int64_t chunk, const F& body) {
  const int threads = at::get_num_threads();
#pragma omp parallel for schedule(dynamic, chunk) num_threads(threads) if (rows > 2 * chunk)
  for (int64_t u = 0; u < rows; ++u) body(u);
}

void check_inputs(const torch::Tensor& indptr, const torch::Tensor& indices, const torch::Tensor& aw,
                  const torch::Tensor& bw, const torch::Tensor& Y, const torch::Tensor& X, const torch::Tensor& G,
                  const torch::Tensor& reg) {
  TORCH_CHECK(indptr.scalar_type() == torch::kInt64 && indptr.is_contiguous(), "indptr must be contiguous int64");
  TORCH_CHECK(indices.scalar_type() == torch::kInt32 && indices.is_contiguous(), "indices must be contiguous int32");
  for (const auto* t : {&aw, &bw, &Y, &X, &G, &reg}) {
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->device().is_cpu(),
                "weights, factors, gramian and regularisation must be contiguous float32 CPU tensors");
  }
  TORCH_CHECK(X.dim() == 2 && Y.dim() == 2 && X.size(1) == Y.size(1), "X and Y must be 2-D with equal columns");
  TORCH_CHECK(G.size(0) == X.size(1) && G.size(1) == X.size(1), "G must be factors x factors");
  TORCH_CHECK(indptr.numel() == X.size(0) + 1 && reg.numel() == X.size(0), "indptr/reg must match the rows of X");
  TORCH_CHECK(aw.numel() == indices.numel() && bw.numel() == indices.numel(), "weights must match indices");
}

}  // namespace

template <int K>
void cg_rows(const int64_t* ip, const int32_t* idx, const float* a, const float* b, const float* y_all, float* x_all,
             const float* g, const float* rg, int64_t rows, int64_t k, int64_t cg_steps) {
  for_each_row(rows, 32, [&](int64_t u) {
    thread_local std::vector<float> buffer;
    buffer.resize(3 * k);
    float* r = buffer.data();
    float* p = r + k;
    float* ap = p + k;
    float* x = x_all + u * k;
    const int64_t s = ip[u], e = ip[u + 1];
    // r = b - A x, accumulated in one pass over the nonzeros.
    for (int64_t j = 0; j < k; ++j) r[j] = -(dot<K>(g + j * k, x, k) + rg[u] * x[j]);
    for (int64_t n = s; n < e; ++n) {
      const float* y = y_all + static_cast<int64_t>(idx[n]) * k;
      axpy<K>(b[n] - a[n] * dot<K>(y, x, k), y, r, k);
    }
    for (int64_t j = 0; j < k; ++j) p[j] = r[j];
    float rsold = dot<K>(r, r, k);
    if (rsold < 1e-20f) return;
    for (int64_t it = 0; it < cg_steps; ++it) {
      apply_system<K>(g, rg[u], idx, a, s, e, y_all, k, p, ap);
      const float alpha = rsold / dot<K>(p, ap, k);
      axpy<K>(alpha, p, x, k);
      axpy<K>(-alpha, ap, r, k);
      const float rsnew = dot<K>(r, r, k);
      if (rsnew < 1e-20f) break;
      const float beta = rsnew / rsold;
      for (int64_t j = 0; j < k; ++j) p[j] = r[j] + beta * p[j];
      rsold = rsnew;
    }
  });
}

void cg_solve(const torch::Tensor& indptr, const torch::Tensor& indices, const torch::Tensor& aw,
              const torch::Tensor& bw, const torch::Tensor& Y, torch::Tensor X, const torch::Tensor& G,
              const torch::Tensor& reg, int64_t cg_steps) {
  check_inputs(indptr, indices, aw, bw, Y, X, G, reg);
  const int64_t rows = X.size(0), k = X.size(1);
  const auto args = std::make_tuple(indptr.data_ptr<int64_t>(), indices.data_ptr<int32_t>(), aw.data_ptr<float>(),
                                    bw.data_ptr<float>(), Y.data_ptr<float>(), X.data_ptr<float>(),
                                    G.data_ptr<float>(), reg.data_ptr<float>());
  auto run = [&](auto kernel) {
    std::apply([&](auto... ptrs) { kernel(ptrs..., rows, k, cg_steps); }, args);
  };
  switch (k) {
    case 32: run(cg_rows<32>); break;
    case 64: run(cg_rows<64>); break;
    case 128: run(cg_rows<128>); break;
    default: run(cg_rows<0>); break;
  }
}

void cholesky_solve(const torch::Tensor& indptr, const torch::Tensor& indices, const torch::Tensor& aw,
                    const torch::Tensor& bw, const torch::Tensor& Y, torch::Tensor X, const torch::Tensor& G,
                    const torch::Tensor& reg) {
  check_inputs(indptr, indices, aw, bw, Y, X, G, reg);
  const int64_t rows = X.size(0), k = X.size(1);
  const int64_t* ip = indptr.data_ptr<int64_t>();
  const int32_t* idx = indices.data_ptr<int32_t>();
  const float* a = aw.data_ptr<float>();
  const float* b = bw.data_ptr<float>();
  const float* y_all = Y.data_ptr<float>();
  const float* g = G.data_ptr<float>();
  const float* rg = reg.data_ptr<float>();
  float* x_all = X.data_ptr<float>();
  std::vector<int64_t> failed;
  std::mutex failed_lock;

  for_each_row(rows, 8, [&](int64_t u) {
    thread_local std::vector<float> af, rhs;
    thread_local std::vector<double> L, z;
    af.resize(k * k); rhs.resize(k); L.resize(k * k); z.resize(k);
    {
      for (int64_t j = 0; j < k * k; ++j) af[j] = g[j];
      for (int64_t j = 0; j < k; ++j) { af[j * k + j] += rg[u]; rhs[j] = 0.f; }
      for (int64_t n = ip[u]; n < ip[u + 1]; ++n) {
        const float* y = y_all + static_cast<int64_t>(idx[n]) * k;
        axpy<0>(b[n], y, rhs.data(), k);
        for (int64_t i = 0; i < k; ++i) axpy<0>(a[n] * y[i], y, af.data() + i * k, i + 1);  // lower triangle
      }
      // In-place Cholesky A = L L^T (lower triangle), in double for robustness on ill-conditioned rows.
      bool ok = true;
      for (int64_t i = 0; i < k && ok; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          double s = af[i * k + j];
          for (int64_t m = 0; m < j; ++m) s -= L[i * k + m] * L[j * k + m];
          if (i == j) {
            if (!(s > 0.0)) { ok = false; break; }
            L[i * k + i] = std::sqrt(s);
          } else {
            L[i * k + j] = s / L[j * k + j];
          }
        }
      }
      if (!ok) {
        std::lock_guard<std::mutex> guard(failed_lock);
        failed.push_back(u);
        return;
      }
      for (int64_t i = 0; i < k; ++i) {  // L z = rhs
        double s = rhs[i];
        for (int64_t m = 0; m < i; ++m) s -= L[i * k + m] * z[m];
        z[i] = s / L[i * k + i];
      }
      float* x = x_all + u * k;
      for (int64_t i = k - 1; i >= 0; --i) {  // L^T x = z
        double s = z[i];
        for (int64_t m = i + 1; m < k; ++m) s -= L[m * k + i] * static_cast<double>(x[m]);
        x[i] = static_cast<float>(s / L[i * k + i]);
      }
    }
  });
  TORCH_CHECK(failed.empty(), "cholesky_solve: the system of ", failed.size(), " row(s) is not positive definite",
              " (first row ", failed.empty() ? -1 : *std::min_element(failed.begin(), failed.end()),
              "); raise the regularisation");
}

// G = Y^T Y. Row blocks are split statically by thread and summed in thread order, so the result is deterministic
// for a given thread count; small matrices run on the calling thread (waking a team costs more than the work).
template <int K>
void gramian_rows(const float* y_all, int64_t n, int64_t k, float* out) {
  const int threads = n >= 65536 ? at::get_num_threads() : 1;
  std::vector<std::vector<float>> partial(threads, std::vector<float>(k * k, 0.f));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    float* acc = partial[t].data();
    for (int64_t u = n * t / team; u < n * (t + 1) / team; ++u) {
      const float* y = y_all + u * k;
      for (int64_t i = 0; i < k; ++i) axpy<K>(y[i], y, acc + i * k, k);
    }
  }
  for (int t = 0; t < threads; ++t)
    for (int64_t j = 0; j < k * k; ++j) out[j] += partial[t][j];
}

torch::Tensor gramian(const torch::Tensor& Y) {
  TORCH_CHECK(Y.scalar_type() == torch::kFloat32 && Y.is_contiguous() && Y.dim() == 2 && Y.device().is_cpu(),
              "Y must be a contiguous 2-D float32 CPU tensor");
  const int64_t n = Y.size(0), k = Y.size(1);
  auto G = torch::zeros({k, k}, Y.options());
  switch (k) {
    case 32: gramian_rows<32>(Y.data_ptr<float>(), n, k, G.data_ptr<float>()); break;
    case 64: gramian_rows<64>(Y.data_ptr<float>(), n, k, G.data_ptr<float>()); break;
    case 128: gramian_rows<128>(Y.data_ptr<float>(), n, k, G.data_ptr<float>()); break;
    default: gramian_rows<0>(Y.data_ptr<float>(), n, k, G.data_ptr<float>()); break;
  }
  return G;
}

// Top-n items by dot product for each user vector, seen items (CSR rows aligned with X) and masked items excluded.
// Blocks of users are dealt to threads; each thread runs its own single-threaded GEMM (nested in the OpenMP region)
// into one reused score buffer (no page faults per block) and selects with at::topk, as implicit's topk does.
std::tuple<torch::Tensor, torch::Tensor> top_k(const torch::Tensor& X, const torch::Tensor& Y, int64_t n,
                                               const torch::Tensor& ex_indptr, const torch::Tensor& ex_indices,
                                               const torch::Tensor& mask, int64_t block) {
  TORCH_CHECK(X.scalar_type() == torch::kFloat32 && Y.scalar_type() == torch::kFloat32 && X.is_contiguous() &&
                  Y.is_contiguous() && X.device().is_cpu() && Y.device().is_cpu(),
              "X and Y must be contiguous float32 CPU tensors");
  const int64_t users = X.size(0), items = Y.size(0);
  TORCH_CHECK(n >= 1 && n <= items, "n must be in [1, ", items, "]");
  const bool has_ex = ex_indptr.numel() > 0;
  TORCH_CHECK(!has_ex || (ex_indptr.numel() == users + 1 && ex_indptr.scalar_type() == torch::kInt64 &&
                          ex_indices.scalar_type() == torch::kInt64),
              "exclusions must be int64 CSR with one row per user");
  const bool row_mask = mask.dim() == 2;
  TORCH_CHECK(mask.numel() == 0 || (mask.scalar_type() == torch::kBool && mask.is_contiguous() &&
                                    mask.size(-1) == items && (!row_mask || mask.size(0) == users)),
              "mask must be bool [items] or [users, items]");
  auto ids = torch::empty({users, n}, torch::kInt64);
  auto scores = torch::empty({users, n}, torch::kFloat32);
  const int64_t* ip = has_ex ? ex_indptr.data_ptr<int64_t>() : nullptr;
  const int64_t* ix = has_ex ? ex_indices.data_ptr<int64_t>() : nullptr;
  const bool* mk = mask.numel() ? mask.data_ptr<bool>() : nullptr;
  const int64_t blocks = (users + block - 1) / block;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const auto Yt = Y.t();
  const int threads = blocks > 1 ? at::get_num_threads() : 1;
#pragma omp parallel num_threads(threads)
  {
    auto buffer = torch::empty({block, items}, torch::kFloat32);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t start = b * block, len = std::min(block, users - start);
      auto out = buffer.narrow(0, 0, len);
      at::mm_out(out, X.narrow(0, start, len), Yt);
      float* s = out.data_ptr<float>();
      for (int64_t r = 0; r < len; ++r) {
        const int64_t u = start + r;
        float* row = s + r * items;
        if (has_ex)
          for (int64_t e = ip[u]; e < ip[u + 1]; ++e) row[ix[e]] = neg_inf;
        if (mk) {
          const bool* m = row_mask ? mk + u * items : mk;
          for (int64_t j = 0; j < items; ++j)
            if (!m[j]) row[j] = neg_inf;
        }
      }
      auto top = at::topk(out, n, 1, true, true);
      scores.narrow(0, start, len).copy_(std::get<0>(top));
      ids.narrow(0, start, len).copy_(std::get<1>(top));
    }
  }
  ids.masked_fill_(torch::isneginf(scores), -1);
  return {ids, scores};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("top_k", &top_k, "Top-n items per user by dot product with exclusions (parallel over user blocks)");
  m.def("gramian", &gramian, "Y^T Y (deterministic for a given thread count)");
  m.doc() = "hybrec fused ALS row solvers (conjugate gradient and Cholesky)";
  m.def("cg_solve", &cg_solve, "Warm-started conjugate-gradient steps for every row, in place on X");
  m.def("cholesky_solve", &cholesky_solve, "Exact Cholesky solve for every row, in place on X");
}

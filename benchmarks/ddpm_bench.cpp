// ddpm-bench: end-to-end throughput of the U-Net on one backend, as JSON lines.
//
//   ddpm-bench --config mnist --mode train --batch 64 --threads 2
//   ddpm-bench --config anime64 --mode infer --repeats 3
//   ddpm-bench --config mnist --mode sample-ddim                  # DDIM-50 of 100 digits
//   ddpm-bench --config mnist --mode sample-ancestral --steps 20  # 20 steps, extrapolated to 1000
//
// Modes:
//   train             noise + q_sample + forward + L2(eps) loss + backward + Adam (lr 2e-4),
//                     dropout 0.1 and label drop 0.1 for the class-conditional mnist config: the
//                     step ../shared/ref/bench.py times.
//   infer             one no-grad forward (one sampling step).
//   sample-ancestral  full DDPM ancestral sampling (1000 steps) of one batch (default 100 mnist
//                     digits, 64 manga32 / 25 anime64 images);
//   sample-ddim       DDIM-50 of the same batch. --steps S runs S steps instead (a respaced
//                     sampler: the same work per step) and extrapolates the full time, marked
//                     "extrapolated": true.
// Reported: img/s (median and min/max over the timed repeats, and every repeat), GFLOP/s (forward
// FLOPs as ref/unet.py counts them, x3 for a training step), peak RSS, the heap allocations
// (operator new + tensor buffers) made during the timed iterations, and the share of the machine
// that *other* processes used during each repeat (foreign_cpu: /proc/stat minus this process's
// CPU time).
//
// Timing protocol (the same as ../shared/ref/bench.py and benchmarks/torch_bench.py): --warmup
// iterations, one sizing iteration, then repeats of ceil(--min-repeat-s / sizing time) iterations
// each. Without --quiet, exactly --repeats repeats; with --quiet Q, repeats go on until --repeats
// of them had foreign_cpu < Q or --max-measure-s of timed work passed (>= 3 repeats). Sampling
// modes: --warmup runs of a 2-step sampler, then --repeats (default 1) timed sampling runs.
//
// JSON fields (one line; fields are only ever added): tool, config, mode, backend, threads, batch,
// params, img_per_s, img_per_s_min, img_per_s_max, gflops, peak_rss_mb, steady_state_heap_allocs,
// steady_state_tensor_allocs, iterations, then precision, warmup, inner, repeats,
// img_per_s_repeats, foreign_cpu (per repeat; null without /proc/stat), quiet_threshold,
// fwd_gflops_per_img; for the sampling modes sampler, sample_steps (full), steps_run,
// extrapolated, sample_s (full sampling time of the batch, median), sample_s_measured, step_s,
// step_img_per_s, guidance; on CUDA device, device_mem_peak_mb, device_mem_reserved_peak_mb; on
// the CPU backend kernel_level (avx512 or avx2: backend/cpu/isa.hpp; DDPM_CPU_LEVEL forces one).
// Exit status: 0 ok, 1 runtime error, 2 bad arguments (also: a precision the backend lacks), 3 a
// backend this build does not contain (e.g. cuda without nvcc).
#include <oneapi/tbb/global_control.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#if defined(DDPM_BENCH_HAVE_CUDA)
#include <type_traits>

#include "ddpm/backend/cuda.hpp"
#endif
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/param_list.hpp"
#include "flops.hpp"

// ---- count every heap allocation of the process (GCC flags replaced new/free pairs falsely)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<std::size_t> g_news{0};
static std::atomic<bool> g_timed{false};
// A breakpoint target: `gdb -ex 'break ddpm_bench_alloc_in_timed_loop'` shows who allocates.
extern "C" __attribute__((noinline)) void ddpm_bench_alloc_in_timed_loop() { asm volatile(""); }
void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (g_timed.load(std::memory_order_relaxed)) ddpm_bench_alloc_in_timed_loop();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

// ---- CPU accounting: the share of all cores used by other processes between two snapshots
// (what ../shared/ref/bench.py's CpuMonitor computes).
struct CpuSnap {
  Clock::time_point t;
  double busy_s = 0, own_s = 0;
  bool ok = false;
};

CpuSnap cpu_snap() {
  CpuSnap s;
  s.t = Clock::now();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.own_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  std::ifstream f("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};
  if (f >> cpu && cpu == "cpu") {
    for (auto& x : v) f >> x;
    const double hz = double(sysconf(_SC_CLK_TCK));
    // user nice system irq softirq (idle, iowait and steal are not work of this machine's
    // processes)
    s.busy_s = double(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
    s.ok = bool(f) && hz > 0;
  }
  return s;
}

/// Foreign CPU share in [0, 1], or NaN when /proc/stat is unavailable.
double foreign_cpu(const CpuSnap& a, const CpuSnap& b) {
  if (!a.ok || !b.ok) return std::numeric_limits<double>::quiet_NaN();
  const double wall = std::max(std::chrono::duration<double>(b.t - a.t).count(), 1e-9);
  const double ncpu = double(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  return std::max(0.0, (b.busy_s - a.busy_s) - (b.own_s - a.own_s)) / (wall * ncpu);
}

struct Args {
  std::string config = "mnist", mode = "train", backend = "cpu", precision = "fp32";
  std::optional<std::size_t> batch, repeats, warmup;
  int threads = 2;
  double min_repeat_s = 0.5;
  double quiet = 0;          // 0: exactly `repeats` repeats
  double max_measure_s = 0;  // 0: no cap
  std::size_t steps = 0;     // sampling modes: steps to run (0 = all)
  double guidance = 1.0;

  [[nodiscard]] bool sampling() const {
    return mode == "sample-ancestral" || mode == "sample-ddim";
  }
};

const char* const usage =
    "ddpm-bench --config mnist|manga32|anime64\n"
    "           --mode train|infer|sample-ancestral|sample-ddim\n"
    "           --backend cpu|reference|cuda --precision fp32 (cuda: fp32|tf32) --threads 2\n"
    "           --batch N          train/infer: 64; sampling: images sampled at once\n"
    "                              (100 mnist, 64 manga32, 25 anime64)\n"
    "           --repeats N        5; sampling: 1\n"
    "           --warmup N         2; sampling: 1 run of a 2-step sampler\n"
    "           --min-repeat-s S   0.5\n"
    "           --quiet Q          0 = off; else repeat until N repeats had foreign CPU < Q\n"
    "           --max-measure-s S  0 = no cap\n"
    "           --steps S          sampling: run S steps instead of 1000 / 50, extrapolate\n"
    "           --guidance W       sampling, mnist: classifier-free guidance weight (1 = off)\n"
    "Prints one JSON line; the fields are listed at the top of benchmarks/ddpm_bench.cpp.\n";

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ddpm-bench: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--config")
      a.config = val();
    else if (k == "--mode")
      a.mode = val();
    else if (k == "--backend")
      a.backend = val();
    else if (k == "--precision")
      a.precision = val();
    else if (k == "--batch")
      a.batch = std::stoul(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--repeats")
      a.repeats = std::stoul(val());
    else if (k == "--warmup")
      a.warmup = std::stoul(val());
    else if (k == "--min-repeat-s")
      a.min_repeat_s = std::stod(val());
    else if (k == "--quiet")
      a.quiet = std::stod(val());
    else if (k == "--max-measure-s")
      a.max_measure_s = std::stod(val());
    else if (k == "--steps")
      a.steps = std::stoul(val());
    else if (k == "--guidance")
      a.guidance = std::stod(val());
    else if (k == "--help" || k == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    } else {
      std::fprintf(stderr, "ddpm-bench: unknown argument %s (see --help)\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.mode != "train" && a.mode != "infer" && !a.sampling()) {
    std::fprintf(
        stderr,
        "ddpm-bench: --mode: unknown mode '%s' (train, infer, sample-ancestral, sample-ddim)\n",
        a.mode.c_str());
    std::exit(2);
  }
  if (a.repeats && *a.repeats == 0) {
    std::fprintf(stderr, "ddpm-bench: --repeats must be >= 1\n");
    std::exit(2);
  }
  return a;
}

ddpm::nn::UNetConfig config_by_name(const std::string& n) {
  if (n == "mnist") return ddpm::nn::UNetConfig::mnist();
  if (n == "manga32") return ddpm::nn::UNetConfig::manga32();
  if (n == "anime64") return ddpm::nn::UNetConfig::anime64();
  throw std::invalid_argument("ddpm-bench: --config: unknown config '" + n +
                              "' (mnist, manga32, anime64)");
}

std::size_t default_samples(const std::string& config) {
  return config == "mnist" ? 100 : config == "anime64" ? 25 : 64;
}

/// Waits for the backend's queued work (CUDA); nothing to wait for on the CPU backends.
template <class B>
void sync(const B& be) {
  if constexpr (requires { be.synchronize(); }) be.synchronize();
}

// ---- JSON line
struct Json {
  std::string s = "{";
  void key(const char* k) {
    if (s.size() > 1) s += ',';
    s += '"';
    s += k;
    s += "\":";
  }
  void str(const char* k, const std::string& v) {
    key(k);
    s += '"';
    s += v;
    s += '"';
  }
  void num(const char* k, double v, int prec) {
    key(k);
    s += fmt(v, prec);
  }
  void uint(const char* k, std::size_t v) {
    key(k);
    s += std::to_string(v);
  }
  void boolean(const char* k, bool v) {
    key(k);
    s += v ? "true" : "false";
  }
  void array(const char* k, const std::vector<double>& v, int prec) {
    key(k);
    s += '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) s += ',';
      s += fmt(v[i], prec);
    }
    s += ']';
  }
  /// prec >= 0: that many decimals; prec < 0: -prec significant digits.
  static std::string fmt(double v, int prec) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    if (prec >= 0)
      std::snprintf(buf, sizeof buf, "%.*f", prec, v);
    else
      std::snprintf(buf, sizeof buf, "%.*g", -prec, v);
    return buf;
  }
};

/// Timed repeats of `one` (see the protocol at the top of the file).
struct Timing {
  std::vector<double> per_iter_s, foreign;
  std::size_t inner = 1, warmup = 0;
  std::size_t heap_allocs = 0, tensor_allocs = 0;  // made inside the timed iterations
};

template <class F, class S>
Timing time_repeats(const Args& a, std::size_t warmup, std::size_t repeats, F&& one, S&& sync_fn) {
  Timing r;
  for (std::size_t i = 0; i < warmup; ++i) one();
  sync_fn();
  auto t0 = Clock::now();
  one();  // sizing iteration
  sync_fn();
  const double single = seconds_since(t0);
  r.warmup = warmup + 1;
  r.inner =
      std::max<std::size_t>(1, std::size_t(std::ceil(a.min_repeat_s / std::max(single, 1e-9))));
  const auto start = Clock::now();
  for (;;) {
    const CpuSnap s0 = cpu_snap();
    const std::size_t news0 = g_news.load(), tens0 = ddpm::detail::tensor_allocation_count().load();
    g_timed = true;
    for (std::size_t k = 0; k < r.inner; ++k) one();
    sync_fn();
    g_timed = false;
    r.heap_allocs += g_news.load() - news0;
    r.tensor_allocs += ddpm::detail::tensor_allocation_count().load() - tens0;
    const CpuSnap s1 = cpu_snap();
    r.per_iter_s.push_back(std::chrono::duration<double>(s1.t - s0.t).count() / double(r.inner));
    r.foreign.push_back(foreign_cpu(s0, s1));
    const std::size_t n = r.per_iter_s.size();
    std::size_t nq = n;
    if (a.quiet > 0)
      nq = std::size_t(std::count_if(r.foreign.begin(), r.foreign.end(),
                                     [&](double f) { return std::isfinite(f) && f < a.quiet; }));
    if (nq >= repeats) break;
    if (a.max_measure_s > 0 && seconds_since(start) > a.max_measure_s && n >= 3) break;
  }
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <class B>
int run(const Args& a, B be) {
  using namespace ddpm;
  const nn::UNetConfig cfg = config_by_name(a.config);
  Diffusion<schedule::Linear, target::Epsilon, loss::L2, B> model(schedule::Linear{.steps = 1000},
                                                                  cfg, 0, loss::L2{}, be);
  const bool sampling = a.sampling();
  const std::size_t N = a.batch.value_or(sampling ? default_samples(a.config) : 64);
  const std::size_t S = cfg.image_size, C = cfg.in_channels;
  const double fwd_gflop = bench::unet_forward_flops(cfg) / 1e9;

  Json js;
  js.str("tool", "ddpm-bench");
  js.str("config", a.config);
  js.str("mode", a.mode);
  js.str("backend", a.backend);
  if constexpr (std::is_same_v<B, ddpm::backend::Cpu>)  // DDPM_CPU_LEVEL=avx2 forces the AVX2 kernels
    js.str("kernel_level", std::string(ddpm::backend::cpu_kernel_level()));
  js.key("threads");
  js.s += std::to_string(a.threads);
  js.uint("batch", N);
  js.uint("params", model.net().num_parameters());

  std::vector<double> ips;  // img/s per repeat
  std::vector<double> foreign;
  std::size_t warmup = 0, inner = 1, news = 0, tens = 0;
  double gflop_img = fwd_gflop;
  Json extra;

  if (!sampling) {
    Tensor<float, B> x0(Shape{N, C, S, S}), out(Shape{N, C, S, S});
    std::vector<float> host(N * C * S * S);
    Rng{1}.fill_normal(host.data(), host.size(), 99);
    for (auto& v : host) v = std::clamp(v * 0.5f, -1.0f, 1.0f);
    x0.copy_from(host);
    std::vector<std::int32_t> labels;
    if (cfg.num_classes)
      for (std::size_t n = 0; n < N; ++n) labels.push_back(std::int32_t(n % cfg.num_classes));
    auto params = optim::collect_parameters<float, B>(model.net());
    optim::AdamOptimizer<float, B> adam(model.net(), optim::Adam{.lr = 2e-4}, be);
    Tensor<std::int32_t, B> t_dev(Shape{N}), y_dev(Shape{N});
    std::vector<std::int32_t> th(N);
    for (std::size_t n = 0; n < N; ++n) th[n] = std::int32_t((n * 37) % 1000);
    t_dev.copy_from(th);
    if (cfg.num_classes) y_dev.copy_from(labels);
    std::uint64_t step = 0;
    const bool train = a.mode == "train";
    auto one = [&] {
      if (train) {
        optim::zero_grads(params, be);
        model.forward_backward(x0.cview(), labels, step++,
                               TrainStepOptions{.p_uncond = cfg.num_classes ? 0.1 : 0.0});
        adam.step(2e-4);
      } else {
        model.net().forward(x0.cview(), t_dev.cview(),
                            cfg.num_classes ? y_dev.cview() : ConstView<std::int32_t>{}, out.view(),
                            nn::Pass{});
      }
    };
    const Timing t =
        time_repeats(a, a.warmup.value_or(2), a.repeats.value_or(5), one, [&] { sync(be); });
    news = t.heap_allocs;
    tens = t.tensor_allocs;
    for (double s : t.per_iter_s) ips.push_back(double(N) / s);
    foreign = t.foreign;
    warmup = t.warmup;
    inner = t.inner;
    if (train) gflop_img *= 3.0;
  } else {
    const bool ddim = a.mode == "sample-ddim";
    const std::size_t full = ddim ? 50 : 1000;
    const std::size_t run_steps = a.steps ? std::min(a.steps, full) : full;
    auto spec = [&](std::size_t steps) -> SamplerSpec {
      if (ddim) return sampler::Ddim{.steps = steps};
      return sampler::Ancestral{.steps = steps == 1000 ? 0 : steps};
    };
    SampleOptions opts;
    opts.num_samples = N;
    opts.seed = 7;
    opts.guidance = a.guidance;
    if (cfg.num_classes)
      for (std::size_t n = 0; n < N; ++n) opts.labels.push_back(std::int32_t(n % cfg.num_classes));
    const std::size_t W = a.warmup.value_or(1), R = a.repeats.value_or(1);
    for (std::size_t i = 0; i < W; ++i) (void)model.sample(spec(2), opts);
    sync(be);
    warmup = W;
    std::vector<double> run_s;
    const auto start = Clock::now();
    for (;;) {
      const CpuSnap s0 = cpu_snap();
      const std::size_t news0 = g_news.load(), tens0 = detail::tensor_allocation_count().load();
      g_timed = true;
      const auto res = model.sample(spec(run_steps), opts);
      sync(be);
      g_timed = false;
      news += g_news.load() - news0;
      tens += detail::tensor_allocation_count().load() - tens0;
      const CpuSnap s1 = cpu_snap();
      if (res.images.empty()) throw std::runtime_error("sampling returned no images");
      run_s.push_back(std::chrono::duration<double>(s1.t - s0.t).count());
      foreign.push_back(foreign_cpu(s0, s1));
      std::size_t nq = run_s.size();
      if (a.quiet > 0)
        nq = std::size_t(std::count_if(foreign.begin(), foreign.end(),
                                       [&](double f) { return std::isfinite(f) && f < a.quiet; }));
      if (nq >= R) break;
      if (a.max_measure_s > 0 && seconds_since(start) > a.max_measure_s &&
          run_s.size() >= std::min<std::size_t>(3, R))
        break;
    }
    // img/s of the full sampling run; every step is one forward of N images (2N with guidance)
    const double calls = a.guidance != 1.0 ? 2.0 : 1.0;
    const double scale = double(full) / double(run_steps);
    for (double s : run_s) ips.push_back(double(N) / (s * scale));
    gflop_img = fwd_gflop * double(full) * calls;
    const double med_run = median(run_s);
    extra.str("sampler", ddim ? "ddim(eta=0)" : "ancestral(fixed_small)");
    extra.uint("sample_steps", full);
    extra.uint("steps_run", run_steps);
    extra.boolean("extrapolated", run_steps != full);
    extra.num("sample_s", med_run * scale, 3);
    extra.num("sample_s_measured", med_run, 3);
    extra.num("step_s", med_run / double(run_steps), -6);
    extra.num("step_img_per_s", double(N) * double(run_steps) / med_run, -6);
    extra.num("guidance", a.guidance, 3);
  }

  std::vector<double> sorted = ips;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted[sorted.size() / 2];
  js.num("img_per_s", med, -6);
  js.num("img_per_s_min", sorted.front(), -6);
  js.num("img_per_s_max", sorted.back(), -6);
  js.num("gflops", med * gflop_img, -5);
  js.num("peak_rss_mb", peak_rss_mb(), 0);
  js.uint("steady_state_heap_allocs", news);
  js.uint("steady_state_tensor_allocs", tens);
  js.uint("iterations", inner * ips.size());
  js.str("precision", a.precision);
  js.uint("warmup", warmup);
  js.uint("inner", inner);
  js.uint("repeats", ips.size());
  js.array("img_per_s_repeats", ips, -6);
  js.array("foreign_cpu", foreign, 4);
  if (a.quiet > 0)
    js.num("quiet_threshold", a.quiet, 3);
  else {
    js.key("quiet_threshold");
    js.s += "null";
  }
  js.num("fwd_gflops_per_img", fwd_gflop, 4);
#if defined(DDPM_BENCH_HAVE_CUDA)
  if constexpr (std::is_same_v<B, ddpm::backend::Cuda>) {  // device memory (the pool: tensors +
                                                           // scratch)
    const auto m = ddpm::cuda::memory_stats();
    js.str("device", ddpm::detail::cuda::Runtime<>::describe(be.device()));
    js.num("device_mem_peak_mb", double(m.peak_in_use) / 1048576.0, 0);
    js.num("device_mem_reserved_peak_mb", double(m.peak_reserved) / 1048576.0, 0);
  }
#endif
  if (extra.s.size() > 1) js.s += ',' + extra.s.substr(1);
  js.s += '}';
  std::printf("%s\n", js.s.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  if (a.backend == "cpu" || a.backend == "reference") {
    if (a.precision != "fp32") {
      std::fprintf(stderr, "ddpm-bench: --precision %s: the %s backend computes in fp32 only\n",
                   a.precision.c_str(), a.backend.c_str());
      return 2;
    }
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           std::size_t(std::max(1, a.threads)));
    if (a.backend == "cpu") return run(a, ddpm::backend::Cpu(a.threads));
    return run(a, ddpm::backend::Reference{});
  }
  if (a.backend == "cuda") {
#if defined(DDPM_BENCH_HAVE_CUDA)
    if (a.precision != "fp32" && a.precision != "tf32") {
      std::fprintf(stderr, "ddpm-bench: --precision %s: the cuda backend has fp32 and tf32\n",
                   a.precision.c_str());
      return 2;
    }
    ddpm::backend::Cuda be;
    be.tf32 = a.precision == "tf32";
    return run(a, be);
#else
    // benchmarks/compare.py reads exit status 3 as "not built" and shows its CUDA columns as n/a.
    std::fprintf(
        stderr, "ddpm-bench: --backend cuda: this ddpm-bench was built without the CUDA backend\n");
    return 3;
#endif
  }
  std::fprintf(stderr, "ddpm-bench: --backend: unknown backend '%s' (cpu, reference, cuda)\n",
               a.backend.c_str());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm-bench: %s\n", e.what());
  return 1;
}

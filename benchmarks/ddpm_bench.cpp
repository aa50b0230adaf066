// ddpm-bench: end-to-end throughput of the U-Net on one backend, as JSON lines.
//
//   ddpm-bench --config mnist --mode train --batch 64 --threads 2
//   ddpm-bench --config anime64 --mode infer --repeats 3
//
// train = noise + q_sample + forward + L2(eps) loss + backward + Adam (lr 2e-4), dropout 0.1 and
// label drop 0.1 for the class-conditional mnist config: the step ../shared/ref/bench.py times.
// infer = one no-grad forward (one sampling step). Also reported: GFLOP/s (forward FLOPs as
// ref/unet.py counts them, x3 for a training step), peak RSS, and the heap allocations
// (operator new + tensor buffers) made during the timed steady-state iterations.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include <oneapi/tbb/global_control.h>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/backend/reference.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/optim/adam.hpp>
#include <ddpm/optim/param_list.hpp>

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

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

struct Args {
  std::string config = "mnist", mode = "train", backend = "cpu";
  std::size_t batch = 64, repeats = 5, warmup = 2;
  int threads = 2;
  double min_repeat_s = 0.5;
};

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
    if (k == "--config") a.config = val();
    else if (k == "--mode") a.mode = val();
    else if (k == "--backend") a.backend = val();
    else if (k == "--batch") a.batch = std::stoul(val());
    else if (k == "--threads") a.threads = std::stoi(val());
    else if (k == "--repeats") a.repeats = std::stoul(val());
    else if (k == "--warmup") a.warmup = std::stoul(val());
    else if (k == "--min-repeat-s") a.min_repeat_s = std::stod(val());
    else if (k == "--help" || k == "-h") {
      std::printf("ddpm-bench --config mnist|manga32|anime64 --mode train|infer --backend cpu|reference\n"
                  "           --batch 64 --threads 2 --repeats 5 --warmup 2 --min-repeat-s 0.5\n");
      std::exit(0);
    } else {
      std::fprintf(stderr, "ddpm-bench: unknown argument %s (see --help)\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

ddpm::nn::UNetConfig config_by_name(const std::string& n) {
  if (n == "mnist") return ddpm::nn::UNetConfig::mnist();
  if (n == "manga32") return ddpm::nn::UNetConfig::manga32();
  if (n == "anime64") return ddpm::nn::UNetConfig::anime64();
  throw std::invalid_argument("ddpm-bench: --config: unknown config '" + n + "' (mnist, manga32, anime64)");
}

template <class B>
int run(const Args& a, B be) {
  using namespace ddpm;
  const nn::UNetConfig cfg = config_by_name(a.config);
  Diffusion<schedule::Linear, target::Epsilon, loss::L2, B> model(schedule::Linear{.steps = 1000}, cfg, 0,
                                                                   loss::L2{}, be);
  const std::size_t N = a.batch, S = cfg.image_size, C = cfg.in_channels;
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
  auto one = [&] {
    if (a.mode == "train") {
      optim::zero_grads(params, be);
      model.forward_backward(x0.cview(), labels, step++, TrainStepOptions{.p_uncond = cfg.num_classes ? 0.1 : 0.0});
      adam.step(2e-4);
    } else {
      model.net().forward(x0.cview(), t_dev.cview(), cfg.num_classes ? y_dev.cview() : ConstView<std::int32_t>{},
                          out.view(), nn::Pass{});
    }
  };
  for (std::size_t i = 0; i < a.warmup; ++i) one();
  // size a repeat to take at least min_repeat_s
  auto t0 = std::chrono::steady_clock::now();
  one();
  const double single = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t per = std::max<std::size_t>(1, std::size_t(a.min_repeat_s / std::max(single, 1e-6)));
  std::vector<double> ips;
  ips.reserve(a.repeats);
  const std::size_t news0 = g_news.load(), tens0 = detail::tensor_allocation_count().load();
  g_timed = true;
  for (std::size_t r = 0; r < a.repeats; ++r) {
    t0 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < per; ++k) one();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ips.push_back(double(per * N) / s);
  }
  g_timed = false;
  const std::size_t news = g_news.load() - news0, tens = detail::tensor_allocation_count().load() - tens0;
  std::vector<double> sorted = ips;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted[sorted.size() / 2];
  const double gflop_img = bench::unet_forward_flops(cfg) / 1e9 * (a.mode == "train" ? 3.0 : 1.0);
  std::printf("{\"tool\":\"ddpm-bench\",\"config\":\"%s\",\"mode\":\"%s\",\"backend\":\"%s\",\"threads\":%d,"
              "\"batch\":%zu,\"params\":%zu,\"img_per_s\":%.3f,\"img_per_s_min\":%.3f,\"img_per_s_max\":%.3f,"
              "\"gflops\":%.1f,\"peak_rss_mb\":%.0f,\"steady_state_heap_allocs\":%zu,\"steady_state_tensor_allocs\":%zu,"
              "\"iterations\":%zu}\n",
              a.config.c_str(), a.mode.c_str(), a.backend.c_str(), a.threads, N, model.net().num_parameters(), med,
              sorted.front(), sorted.back(), med * gflop_img, peak_rss_mb(), news, tens, per * a.repeats);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::size_t(std::max(1, a.threads)));
  if (a.backend == "cpu") return run(a, ddpm::backend::Cpu(a.threads));
  if (a.backend == "reference") return run(a, ddpm::backend::Reference{});
  std::fprintf(stderr, "ddpm-bench: --backend: unknown backend '%s' (cpu, reference)\n", a.backend.c_str());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm-bench: %s\n", e.what());
  return 1;
}

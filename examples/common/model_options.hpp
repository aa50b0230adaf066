// examples/common/model_options.hpp — the one place where run-time choices (schedule, target,
// loss, T, U-Net sizes) become compile-time policies: make_model() returns the matching
// ddpm::Diffusion<S, P, L, B> behind the policy-free ddpm::Model<float, B> (the Diffusion types
// are instantiated in examples/common/model_<target>.cpp, not here).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>

namespace examples {

struct ModelOptions {
  std::string schedule = "cosine";  // linear | cosine | sigmoid
  std::string target = "epsilon";   // epsilon | x0 | v
  std::string loss = "l2";          // l1 | l2 | huber
  double huber_delta = 1.0;
  std::size_t timesteps = 1000;
  double min_snr_gamma = 0.0;
  std::uint64_t seed = 0;
  ddpm::nn::UNetConfig unet;

  /// Registers --schedule, --target, --loss, --huber-delta, --timesteps, --min-snr-gamma, --seed
  /// and the U-Net size flags on a CLI11 (sub)command.
  void add_options(CLI::App& app) {
    app.add_option("--schedule", schedule, "noise schedule")
        ->check(CLI::IsMember({"linear", "cosine", "sigmoid"}))
        ->capture_default_str();
    app.add_option("--target", target, "what the network predicts")
        ->check(CLI::IsMember({"epsilon", "x0", "v"}))
        ->capture_default_str();
    app.add_option("--loss", loss, "training loss")
        ->check(CLI::IsMember({"l1", "l2", "huber"}))
        ->capture_default_str();
    app.add_option("--huber-delta", huber_delta, "delta of the Huber loss")->capture_default_str();
    app.add_option("--timesteps,-T", timesteps, "diffusion steps T")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--min-snr-gamma", min_snr_gamma, "min-SNR-gamma loss weighting (0 = off)")
        ->capture_default_str();
    app.add_option("--seed", seed, "seed of every random draw")->capture_default_str();
    app.add_option("--base-channels", unet.base_channels, "U-Net base channels")->capture_default_str();
    app.add_option("--channel-mults", unet.channel_mults, "channel multiplier per level")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--num-res-blocks", unet.num_res_blocks, "ResBlocks per level")->capture_default_str();
    app.add_option("--attn-res", unet.attention_resolutions, "resolutions with attention")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--attn-heads", unet.num_heads,
                   "heads of every attention block (must divide its channels)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--groups", unet.groups, "GroupNorm groups")->capture_default_str();
    app.add_option("--dropout", unet.dropout, "dropout probability")->capture_default_str();
  }

  [[nodiscard]] std::map<std::string, std::string> to_metadata() const {
    auto list = [](const std::vector<std::size_t>& v) {
      std::string s;
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
      return s;
    };
    return {{"opt.schedule", schedule},
            {"opt.target", target},
            {"opt.loss", loss},
            {"opt.huber_delta", ddpm::detail::cat(huber_delta)},
            {"opt.timesteps", std::to_string(timesteps)},
            {"opt.min_snr_gamma", ddpm::detail::cat(min_snr_gamma)},
            {"opt.in_channels", std::to_string(unet.in_channels)},
            {"opt.image_size", std::to_string(unet.image_size)},
            {"opt.base_channels", std::to_string(unet.base_channels)},
            {"opt.channel_mults", list(unet.channel_mults)},
            {"opt.num_res_blocks", std::to_string(unet.num_res_blocks)},
            {"opt.attention_resolutions", list(unet.attention_resolutions)},
            {"opt.num_classes", std::to_string(unet.num_classes)},
            {"opt.groups", std::to_string(unet.groups)},
            {"opt.dropout", ddpm::detail::cat(unet.dropout)},
            {"opt.num_heads", std::to_string(unet.num_heads)}};
  }

  /// The options a checkpoint was trained with (written by to_metadata()).
  static ModelOptions from_metadata(const std::map<std::string, std::string>& m, const std::string& path) {
    auto get = [&](const std::string& k) -> const std::string& {
      const auto it = m.find("opt." + k);
      if (it == m.end())
        throw ddpm::IoError(path, "checkpoint metadata lacks 'opt." + k +
                                      "' (not written by this example?)");
      return it->second;
    };
    auto num = [&](const std::string& k) { return std::stod(get(k)); };
    auto list = [&](const std::string& k) {
      std::vector<std::size_t> v;
      std::stringstream ss(get(k));
      std::string item;
      while (std::getline(ss, item, ','))
        if (!item.empty()) v.push_back(std::stoul(item));
      return v;
    };
    ModelOptions o;
    o.schedule = get("schedule");
    o.target = get("target");
    o.loss = get("loss");
    o.huber_delta = num("huber_delta");
    o.timesteps = std::size_t(num("timesteps"));
    o.min_snr_gamma = num("min_snr_gamma");
    o.unet.in_channels = std::size_t(num("in_channels"));
    o.unet.image_size = std::size_t(num("image_size"));
    o.unet.base_channels = std::size_t(num("base_channels"));
    o.unet.channel_mults = list("channel_mults");
    o.unet.num_res_blocks = std::size_t(num("num_res_blocks"));
    o.unet.attention_resolutions = list("attention_resolutions");
    o.unet.num_classes = std::size_t(num("num_classes"));
    o.unet.groups = std::size_t(num("groups"));
    o.unet.dropout = num("dropout");
    // written since multi-head attention exists; older checkpoints are single-head
    if (m.count("opt.num_heads")) o.unet.num_heads = std::size_t(num("num_heads"));
    if (m.count("seed")) o.seed = std::stoull(m.at("seed"));
    return o;
  }
};

/// Diffusion<S, P, L, B> for target P and the run-time schedule and loss in `o`. Defined in
/// examples/common/make_model_impl.hpp and instantiated once per target in its own translation
/// unit (examples/common/model_<target>.cpp, for backend::Cpu and, in CUDA builds, backend::Cuda):
/// the 27 policy combinations compile in three parallel units, not in every example's main.
template <class B, class P>
std::unique_ptr<ddpm::Model<float, B>> make_model_for(const ModelOptions& o, const B& be);

/// Instantiates Diffusion<S, P, L, B> for the run-time choice in `o`.
template <class B>
std::unique_ptr<ddpm::Model<float, B>> make_model(const ModelOptions& o, const B& be) {
  if (o.target == "epsilon") return make_model_for<B, ddpm::target::Epsilon>(o, be);
  if (o.target == "x0") return make_model_for<B, ddpm::target::X0>(o, be);
  if (o.target == "v") return make_model_for<B, ddpm::target::V>(o, be);
  throw std::invalid_argument("--target: unknown target '" + o.target + "' (epsilon, x0, v)");
}

}  // namespace examples

// SPDX-License-Identifier: MIT
// Checkpoint data safety (ddpm/train/checkpoint.hpp): write errors (file size limit, read-only
// folder, full file system) keep the previous checkpoint; stale temporary files are cleaned;
// truncated, damaged and foreign files are refused, naming the file, without touching the model;
// load_latest_checkpoint falls back to <path>.prev; a checkpoint of another configuration is
// refused naming the field, for every field of the signature.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "helpers/checkpoint_state.hpp"
#include "io/io_test_util.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/train/trainer.hpp"

using namespace ddpm;
using ddpm::io::test::TempDir;
using ddpm::test::KillState;
using ddpm::test::set_state;
using Ref = backend::Reference;
namespace fs = std::filesystem;

namespace {

std::vector<std::byte> file_bytes(const fs::path& p) { return io::read_file(p); }

void put_bytes(const fs::path& p, std::span<const std::byte> b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  REQUIRE(f.good());
}

/// Saves the state of `step` (weights, EMA, Adam) to `path`.
void save_step(const fs::path& path, std::uint64_t step, bool keep_prev = true) {
  KillState s;
  set_state(s, step);
  save_checkpoint(path, s.model, &s.adam, &s.ema, test::counters_for(step), {}, keep_prev);
}

/// Loads `path` into a fresh state and checks that it is exactly the state of `step`.
void check_holds_step(const fs::path& path, std::uint64_t step) {
  KillState got, expect;
  const auto ck = load_checkpoint(path, got.model, &got.adam, &got.ema);
  set_state(expect, step);
  INFO(path.string());
  CHECK(ck.counters.step == step);
  CHECK(test::same_bytes(got.tensors(), expect.tensors()));
}

std::vector<std::string> sorted_entries(const TempDir& d) {
  auto e = d.entries();
  std::sort(e.begin(), e.end());
  return e;
}

/// Re-encodes a checkpoint with its metadata changed by `edit` (and the tensors kept unless
/// `drop` names one); the checksum is dropped unless the edit keeps it.
void rewrite(const fs::path& from, const fs::path& to,
             const std::function<void(std::map<std::string, std::string>&)>& edit,
             const std::string& drop = {}) {
  const auto f = io::SafeTensorsFile::load(from);
  std::vector<io::TensorEntry> entries;
  for (const auto& name : f.names()) {
    if (name == drop) continue;
    const auto& info = f.info(name);
    entries.push_back({name, info.dtype, info.shape, f.bytes(name)});
  }
  auto meta = f.metadata();
  meta.erase("checksum");
  edit(meta);
  io::write_safetensors(to, entries, meta);
}

/// Runs `body` in a child process (fork) and returns its exit status and what it wrote to the
/// pipe. body returns 0 (pass), 77 (skipped, the text says why) or 1 (failed, the text says why).
std::pair<int, std::string> in_child(const std::function<int(std::string&)>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string text;
    int rc = 1;
    try {
      rc = body(text);
    } catch (const std::exception& e) {
      text = std::string("exception: ") + e.what();
    }
    const ssize_t n = ::write(fds[1], text.data(), text.size());
    (void)n;
    ::_exit(rc);
  }
  ::close(fds[1]);
  std::string text;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) text.append(buf, std::size_t(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return {WEXITSTATUS(status), text};
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ------------------------------------------------------------------ write errors

TEST_CASE("checkpoint: a save over the file size limit fails naming the path and File too large, the previous checkpoint stays") {
  TempDir dir;
  const fs::path ck = dir / "ck.safetensors";
  save_step(ck, 1);
  save_step(ck, 2);
  const auto before = file_bytes(ck);
  REQUIRE(before.size() > 65536);
  // RLIMIT_FSIZE makes write() fail with EFBIG, standing in for a full disk (ENOSPC takes the
  // same path, see the tmpfs test below); SIGXFSZ would kill the process, so it is ignored.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 65536;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    save_step(ck, 3);
  } catch (const IoError& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  INFO(message);
  CHECK(starts_with(message, ck.string() + ": "));
  CHECK(contains(message, "File too large"));
  CHECK(file_bytes(ck) == before);  // byte for byte the previous checkpoint
  check_holds_step(ck, 2);
  check_holds_step(ck.string() + ".prev", 2);  // kept before the failed write: same file
  CHECK(sorted_entries(dir) == std::vector<std::string>{"ck.safetensors", "ck.safetensors.prev"});
  // The next save works and leaves no temporary file either (.prev was already a link to the
  // current file: that case must not leave its temporary link behind).
  save_step(ck, 3);
  check_holds_step(ck, 3);
  check_holds_step(ck.string() + ".prev", 2);
  CHECK(sorted_entries(dir) == std::vector<std::string>{"ck.safetensors", "ck.safetensors.prev"});
}

TEST_CASE("checkpoint: a save into a read-only folder fails naming the path and Permission denied, the previous checkpoint stays") {
  TempDir dir;
  const fs::path ck = dir / "ck.safetensors";
  save_step(ck, 1);
  save_step(ck, 2);
  const auto before = file_bytes(ck);
  REQUIRE(::chmod(dir.path().c_str(), 0555) == 0);
  // root ignores folder permissions: the attempt runs in a child that drops to user "nobody".
  const bool root = ::geteuid() == 0;
  const auto [rc, text] = in_child([&](std::string& out) -> int {
    if (root && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      out = "cannot drop root privileges to test a read-only folder";
      return 77;
    }
    try {
      save_step(ck, 3);
      out = "the save succeeded";
      return 1;
    } catch (const IoError& e) {
      out = e.what();
      return 0;
    }
  });
  ::chmod(dir.path().c_str(), 0755);
  if (rc == 77) {
    MESSAGE("skipped: ", text);
    return;
  }
  INFO(text);
  CHECK(rc == 0);
  CHECK(starts_with(text, ck.string() + ": "));
  CHECK(contains(text, "Permission denied"));
  CHECK(file_bytes(ck) == before);
  check_holds_step(ck, 2);
  check_holds_step(ck.string() + ".prev", 1);
  CHECK(sorted_entries(dir) == std::vector<std::string>{"ck.safetensors", "ck.safetensors.prev"});
}

TEST_CASE("checkpoint: a save on a full file system fails naming the path and No space left on device, the previous checkpoint stays") {
  // A real ENOSPC needs a small file system: a 1.2 MB tmpfs mounted in a private mount
  // namespace of a child process. Without the privilege for that (CI as a normal user) the
  // test is skipped; the file-size-limit test above covers the same code path.
  TempDir dir;
  const fs::path mnt = dir / "small";
  fs::create_directories(mnt);
  const auto [rc, text] = in_child([&](std::string& out) -> int {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1200k") != 0) {
      out = std::string("cannot mount a small tmpfs (") + std::strerror(errno) + ")";
      return 77;
    }
    const fs::path ck = mnt / "ck.safetensors";
    save_step(ck, 1);  // 0.77 MB: fits once, not twice
    const auto before = file_bytes(ck);
    try {
      save_step(ck, 2);
      out = "the second save succeeded";
      return 1;
    } catch (const IoError& e) {
      out = e.what();
    }
    if (!starts_with(out, ck.string() + ": ") || !contains(out, "No space left on device")) return 1;
    if (file_bytes(ck) != before) {
      out += " -- and the previous checkpoint changed";
      return 1;
    }
    KillState got, expect;
    (void)load_checkpoint(ck, got.model, &got.adam, &got.ema);
    set_state(expect, 1);
    if (!test::same_bytes(got.tensors(), expect.tensors())) {
      out += " -- and the previous checkpoint does not load as it was";
      return 1;
    }
    for (const auto& e : fs::directory_iterator(mnt)) {
      const std::string n = e.path().filename().string();
      if (n != "ck.safetensors" && n != "ck.safetensors.prev") {
        out += " -- and left " + n;
        return 1;
      }
    }
    return 0;
  });
  if (rc == 77) {
    MESSAGE("skipped: ", text);
    return;
  }
  INFO(text);
  CHECK(rc == 0);
}

TEST_CASE("checkpoint: the next save removes temporary files of killed saves, not those of live processes") {
  TempDir dir;
  const fs::path ck = dir / "ck.safetensors";
  // A process id that is certainly dead: a child that has exited and been reaped.
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  const std::string d = std::to_string(dead), live = std::to_string(::getppid());
  for (const std::string& n : std::vector<std::string>{"ck.safetensors.tmp." + d + ".0", "ck.safetensors.tmp." + d + ".17",
                               "ck.safetensors.prev.link." + d, "ck.safetensors.tmp." + live + ".0",
                               "ck.safetensors.prev.link." + live, "other.safetensors.tmp." + d + ".0",
                               "ck.safetensors.tmp.notapid"})
    io::test::write_text(dir / n, "partial");
  save_step(ck, 1);
  CHECK(sorted_entries(dir) ==
        std::vector<std::string>{"ck.safetensors", "ck.safetensors.prev.link." + live,
                                 "ck.safetensors.tmp." + live + ".0", "ck.safetensors.tmp.notapid",
                                 "other.safetensors.tmp." + d + ".0"});
}

// ------------------------------------------------------------------ bad files

TEST_CASE("checkpoint: a truncated file is refused at every length, naming the file, and the model is untouched") {
  TempDir dir;
  const fs::path good = dir / "good.safetensors", bad = dir / "bad.safetensors";
  save_step(good, 4);
  const auto bytes = file_bytes(good);
  const std::size_t header_end = 8 + std::size_t(bytes[0]) + (std::size_t(bytes[1]) << 8) +
                                 (std::size_t(bytes[2]) << 16);
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n < header_end + 64; n += (n < 64 || n + 64 > header_end) ? 1 : 97)
    lengths.push_back(n);
  for (std::size_t n = header_end + 64; n < bytes.size(); n += (bytes.size() - header_end) / 150 + 1)
    lengths.push_back(n);
  lengths.push_back(bytes.size() - 1);
  KillState s;
  set_state(s, 9);
  const auto state9 = s.tensors();
  const std::string named = bad.string() + ": ";
  for (const std::size_t n : lengths) {
    put_bytes(bad, std::span(bytes).first(n));
    INFO("length ", n, " of ", bytes.size());
    CHECK_THROWS_WITH_AS((void)load_checkpoint(bad, s.model, &s.adam, &s.ema),
                         doctest::Contains(named.c_str()), IoError);
  }
  CHECK(test::same_bytes(s.tensors(), state9));
  CHECK(s.adam.steps() == 9);
  CHECK(s.ema.updates() == 9);
}

TEST_CASE("checkpoint: a damaged byte is refused (checksum or format), naming the file, and the model is untouched") {
  TempDir dir;
  const fs::path good = dir / "good.safetensors", bad = dir / "bad.safetensors";
  save_step(good, 4);
  const auto bytes = file_bytes(good);
  const std::size_t header_end = 8 + std::size_t(bytes[0]) + (std::size_t(bytes[1]) << 8) +
                                 (std::size_t(bytes[2]) << 16);
  KillState s;
  set_state(s, 9);
  const auto state9 = s.tensors();
  std::mt19937 rng(5);
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < 8; ++i) positions.push_back(i);
  for (int i = 0; i < 150; ++i) positions.push_back(8 + rng() % (header_end - 8));
  for (int i = 0; i < 150; ++i) positions.push_back(header_end + rng() % (bytes.size() - header_end));
  // The step and a weight specifically: the damage a reader without a checksum would not see.
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, header_end - 8);
  positions.push_back(8 + header.find("\"step\":\"4\"") + 8);
  positions.push_back(bytes.size() - 1);
  int checksum_errors = 0;
  for (const std::size_t pos : positions) {
    for (const unsigned char flip : {0x01, 0x80}) {
      auto damaged = bytes;
      damaged[pos] ^= std::byte(flip);
      put_bytes(bad, damaged);
      INFO("byte ", pos, " ^ ", int(flip), " (header ends at ", header_end, ")");
      try {
        (void)load_checkpoint(bad, s.model, &s.adam, &s.ema);
        FAIL("a damaged file was accepted");
      } catch (const IoError& e) {
        CHECK(starts_with(e.what(), bad.string() + ": "));
        if (contains(e.what(), "checksum mismatch")) ++checksum_errors;
      }
    }
  }
  CHECK(checksum_errors >= 300);  // every damaged data byte, at least
  CHECK(test::same_bytes(s.tensors(), state9));
}

TEST_CASE("checkpoint: a file that lacks a tensor is refused before anything is copied") {
  TempDir dir;
  const fs::path good = dir / "good.safetensors", bad = dir / "bad.safetensors";
  save_step(good, 4);
  std::string last;
  for (const auto& n : io::SafeTensorsFile::load(good).names())
    if (n.rfind("adam_v.", 0) == 0) last = n;
  // (As a version 1 file, which has no checksum: the reader's own checks must catch it.)
  rewrite(good, bad, [](auto& m) { m["format"] = "ddpm-checkpoint-1"; }, last);
  KillState s;
  set_state(s, 9);
  const auto state9 = s.tensors();
  const std::string lacks = "lacks tensor '" + last + "'";
  CHECK_THROWS_WITH_AS((void)load_checkpoint(bad, s.model, &s.adam, &s.ema),
                       doctest::Contains(lacks.c_str()), IoError);
  CHECK(test::same_bytes(s.tensors(), state9));  // weights and EMA were not half-loaded
  CHECK(s.adam.steps() == 9);
  // Version 1 files (written before the checksum existed) still load; a version 2 file without
  // its checksum is damaged.
  rewrite(good, bad, [](auto& m) { m["format"] = "ddpm-checkpoint-1"; });
  check_holds_step(bad, 4);
  rewrite(good, bad, [](auto&) {});
  CHECK_THROWS_WITH_AS((void)load_checkpoint(bad, s.model, &s.adam, &s.ema),
                       doctest::Contains("metadata 'checksum' is missing"), IoError);
}

TEST_CASE("checkpoint: files of other programs are refused naming the file and the problem") {
  TempDir dir;
  KillState s;
  auto refused = [&](const fs::path& p, const std::string& problem) {
    INFO(p.string());
    const std::string named = p.string() + ": ";
    CHECK_THROWS_WITH_AS((void)load_checkpoint(p, s.model, &s.adam, &s.ema),
                         doctest::Contains(named.c_str()), IoError);
    CHECK_THROWS_WITH_AS((void)load_checkpoint(p, s.model, &s.adam, &s.ema),
                         doctest::Contains(problem.c_str()), IoError);
  };
  // Plain safetensors weights (what PyTorch or another library writes): no ddpm metadata.
  std::vector<float> w(6, 1.0f);
  const std::vector<io::TensorEntry> t{{"weight", "F32", {2, 3}, std::as_bytes(std::span(w))}};
  io::write_safetensors(dir / "hf.safetensors", t);
  refused(dir / "hf.safetensors", "not a ddpm checkpoint (metadata 'format' is missing");
  io::write_safetensors(dir / "other.safetensors", t, {{"format", "pt"}});
  refused(dir / "other.safetensors", "metadata 'format' is 'pt'");
  save_step(dir / "good.safetensors", 1);
  rewrite(dir / "good.safetensors", dir / "future.safetensors",
          [](auto& m) { m["format"] = "ddpm-checkpoint-9"; });
  refused(dir / "future.safetensors", "'ddpm-checkpoint-9'");
  // Not safetensors at all.
  io::test::write_text(dir / "empty.safetensors", "");
  refused(dir / "empty.safetensors", "truncated");
  io::test::write_text(dir / "text.safetensors", "{\"step\": 3}\n");
  refused(dir / "text.safetensors", "header length");
  io::test::write_bytes(dir / "image.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                            'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0});
  refused(dir / "image.png", "header length");
  refused(dir.path(), "is a folder");
  refused(dir / "missing.safetensors", "No such file or directory");
  // Numbers that do not parse.
  rewrite(dir / "good.safetensors", dir / "neg.safetensors", [](auto& m) {
    m["step"] = "-1";
    m["format"] = "ddpm-checkpoint-1";
  });
  refused(dir / "neg.safetensors", "'step' is not an unsigned integer");
}

TEST_CASE("checkpoint: load_latest_checkpoint falls back to .prev when the newest file is missing, truncated or damaged") {
  TempDir dir;
  const fs::path ck = dir / "ck.safetensors", prev = dir / "ck.safetensors.prev";
  KillState s;
  CHECK_THROWS_WITH_AS((void)load_latest_checkpoint(ck, s.model, &s.adam, &s.ema),
                       doctest::Contains("no usable checkpoint"), IoError);
  save_step(ck, 1);
  save_step(ck, 2);
  {
    const auto l = load_latest_checkpoint(ck, s.model, &s.adam, &s.ema);
    CHECK(l.path == ck.string());
    CHECK(l.counters.step == 2);
    CHECK(l.fallback_reason.empty());
  }
  const auto bytes = file_bytes(ck);
  put_bytes(ck, std::span(bytes).first(bytes.size() / 2));  // torn by a non-atomic copy, say
  {
    const auto l = load_latest_checkpoint(ck, s.model, &s.adam, &s.ema);
    CHECK(l.path == prev.string());
    CHECK(l.counters.step == 1);
    CHECK(contains(l.fallback_reason, ck.string()));
    KillState expect;
    set_state(expect, 1);
    CHECK(test::same_bytes(s.tensors(), expect.tensors()));
  }
  fs::remove(ck);
  CHECK(load_latest_checkpoint(ck, s.model, &s.adam, &s.ema).counters.step == 1);
  // Both bad: the error names both files.
  put_bytes(prev, std::span(bytes).first(100));
  try {
    (void)load_latest_checkpoint(ck, s.model, &s.adam, &s.ema);
    FAIL("expected an IoError");
  } catch (const IoError& e) {
    CHECK(contains(e.what(), ck.string()));
    CHECK(contains(e.what(), prev.string()));
  }
  // A configuration mismatch is not hidden by a fallback.
  save_step(ck, 3);
  test::KillModel other(schedule::Linear{.steps = 60}, test::kill_unet_config(), 11);
  CHECK_THROWS_AS((void)load_latest_checkpoint(ck, other), CheckpointMismatch);
  // The trainer resumes the same way.
  KillState t;
  TrainConfig cfg;
  cfg.max_steps = 5;
  cfg.progress = false;
  cfg.handle_sigint = false;
  Trainer<float, Ref> tr(t.model, cfg);
  tr.save(ck);
  put_bytes(ck, std::span(bytes).first(10));
  const auto r = tr.resume_latest(ck);
  CHECK(r.path == prev.string());
}

// ------------------------------------------------------------------ configuration mismatch

namespace {

/// Loads `file` into `model` and returns the mismatching field ("" if it loaded).
template <class M>
std::string mismatch_field(const fs::path& file, M& model, std::string* message = nullptr) {
  try {
    (void)load_checkpoint(file, model);
  } catch (const CheckpointMismatch& e) {
    if (message) *message = e.what();
    return e.field();
  }
  return "";
}

/// A user schedule without describe(): only its beta table (fingerprint) tells two apart.
struct FlatSchedule {
  double b = 0.01;
  [[nodiscard]] std::size_t num_steps() const noexcept { return 50; }
  [[nodiscard]] double beta(std::size_t) const noexcept { return b; }
};

}  // namespace

TEST_CASE("checkpoint: a checkpoint of another configuration is refused naming the field, for every field of the signature") {
  TempDir dir;
  const fs::path ck = dir / "ck.safetensors";
  save_step(ck, 1);  // Linear(T=50), epsilon, L2, KillState's U-Net, float, seed 11
  const auto cfg = test::kill_unet_config();
  using schedule::Linear;
  {
    test::KillModel same(Linear{.steps = 50}, cfg, 11);
    CHECK(mismatch_field(ck, same).empty());
  }
  {
    Diffusion<schedule::Cosine, target::Epsilon, loss::L2, Ref> m(schedule::Cosine{.steps = 50}, cfg, 11);
    std::string msg;
    CHECK(mismatch_field(ck, m, &msg) == "schedule");
    CHECK(contains(msg, ck.string() + ": checkpoint was written for schedule = linear("));
  }
  {
    test::KillModel m(Linear{.steps = 50, .beta_end = 0.03}, cfg, 11);
    std::string msg;
    CHECK(mismatch_field(ck, m, &msg) == "schedule.beta_end");
    CHECK(contains(msg, "schedule.beta_end = 0.02, but this model has schedule.beta_end = 0.03"));
  }
  {
    test::KillModel m(Linear{.steps = 60}, cfg, 11);
    CHECK(mismatch_field(ck, m) == "T");
  }
  {
    Diffusion<Linear, target::X0, loss::L2, Ref> m(Linear{.steps = 50}, cfg, 11);
    CHECK(mismatch_field(ck, m) == "target");
  }
  {
    Diffusion<Linear, target::V, loss::L2, Ref> m(Linear{.steps = 50}, cfg, 11);
    CHECK(mismatch_field(ck, m) == "target");
  }
  {
    Diffusion<Linear, target::Epsilon, loss::L1, Ref> m(Linear{.steps = 50}, cfg, 11);
    CHECK(mismatch_field(ck, m) == "loss");
  }
  {
    test::KillModel m(Linear{.steps = 50}, cfg, 11, {}, {}, ProcessOptions{.min_snr_gamma = 5.0});
    CHECK(mismatch_field(ck, m) == "min_snr_gamma");
  }
  {
    Diffusion<Linear, target::Epsilon, loss::L2, Ref, double> m(Linear{.steps = 50}, cfg, 11);
    CHECK(mismatch_field(ck, m) == "value_type");
  }
  {
    test::KillModel m(Linear{.steps = 50}, cfg, 12);
    CHECK(mismatch_field(ck, m) == "seed");
  }
  // Every field of the U-Net configuration, named as unet.<field>.
  const std::vector<std::pair<std::string, std::function<void(nn::UNetConfig&)>>> unet_changes = {
      {"in_channels", [](auto& c) { c.in_channels = 3; }},
      {"image_size", [](auto& c) {  // (attention_resolutions follows it: named after it)
         c.image_size = 16;
         c.attention_resolutions = {8};
       }},
      {"base_channels", [](auto& c) { c.base_channels = 16; }},
      {"channel_mults", [](auto& c) { c.channel_mults = {1, 1}; }},
      {"num_res_blocks", [](auto& c) { c.num_res_blocks = 2; }},
      {"attention_resolutions", [](auto& c) { c.attention_resolutions = {}; }},
      {"num_classes", [](auto& c) { c.num_classes = 10; }},
      {"groups", [](auto& c) { c.groups = 8; }},
      {"dropout", [](auto& c) { c.dropout = 0.1; }},
      {"out_channels", [](auto& c) { c.out_channels = 2; }},
  };
  for (const auto& [field, change] : unet_changes) {
    auto c = cfg;
    change(c);
    test::KillModel m(Linear{.steps = 50}, c, 11);
    std::string msg;
    CHECK(mismatch_field(ck, m, &msg) == "unet." + field);
    CHECK(contains(msg, "UNetConfig{"));  // the full configurations follow, for reference
  }
  // A field missing from the file (older or foreign writer) is named too.
  rewrite(ck, dir / "nosig.safetensors", [](auto& m) {
    m.erase("sig.loss");
    m["format"] = "ddpm-checkpoint-1";  // a version 1 file needs no checksum
  });
  {
    test::KillModel m(Linear{.steps = 50}, cfg, 11);
    std::string msg;
    CHECK(mismatch_field(dir / "nosig.safetensors", m, &msg) == "loss");
    CHECK(contains(msg, "loss = (missing)"));
  }
  // Loss parameters and user schedules that differ only in their betas.
  {
    Diffusion<Linear, target::Epsilon, loss::Huber, Ref> a(Linear{.steps = 50}, cfg, 11, loss::Huber{.delta = 1.0f});
    save_checkpoint(dir / "huber.safetensors", a, nullptr, nullptr, TrainCounters{});
    Diffusion<Linear, target::Epsilon, loss::Huber, Ref> b(Linear{.steps = 50}, cfg, 11, loss::Huber{.delta = 0.5f});
    CHECK(mismatch_field(dir / "huber.safetensors", b) == "loss.delta");
  }
  {
    Diffusion<FlatSchedule, target::Epsilon, loss::L2, Ref> a(FlatSchedule{.b = 0.01}, cfg, 11);
    save_checkpoint(dir / "flat.safetensors", a, nullptr, nullptr, TrainCounters{});
    Diffusion<FlatSchedule, target::Epsilon, loss::L2, Ref> b(FlatSchedule{.b = 0.02}, cfg, 11);
    CHECK(mismatch_field(dir / "flat.safetensors", b) == "schedule_fingerprint");
    Diffusion<FlatSchedule, target::Epsilon, loss::L2, Ref> c(FlatSchedule{.b = 0.01}, cfg, 11);
    CHECK(mismatch_field(dir / "flat.safetensors", c).empty());
  }
  // The trainer's own setting: the batch size (the data order depends on it).
  {
    KillState s;
    TrainConfig tc;
    tc.max_steps = 1;
    tc.batch_size = 4;
    tc.progress = false;
    tc.handle_sigint = false;
    Trainer<float, Ref>(s.model, tc).save(dir / "trainer.safetensors");
    tc.batch_size = 8;
    Trainer<float, Ref> t8(s.model, tc);
    try {
      (void)t8.resume(dir / "trainer.safetensors");
      FAIL("expected a mismatch");
    } catch (const CheckpointMismatch& e) {
      CHECK(e.field() == "batch_size");
    }
  }
}

// Tests for ddpm/eval/sha256.hpp: FIPS 180-4 known answers and the data-set content hash.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ddpm/eval/sha256.hpp"

using namespace ddpm;

TEST_CASE("eval sha256: FIPS 180-4 known answers") {
  eval::Sha256 h;
  CHECK(h.hex_digest() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.reset();
  h.update("abc");
  CHECK(h.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  h.reset();
  h.update("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
  CHECK(h.hex_digest() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a' in uneven pieces, so that the partial-block path is exercised.
  h.reset();
  const std::string chunk(997, 'a');
  std::size_t left = 1000000;
  while (left) {
    const std::size_t m = std::min(left, chunk.size());
    h.update(std::string_view(chunk).substr(0, m));
    left -= m;
  }
  CHECK(h.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("eval sha256: data-set hash is pixels then one byte per label") {
  io::ImageDataset d;
  d.n = 2;
  d.c = 1;
  d.h = 2;
  d.w = 2;
  d.pixels = {0, 1, 2, 3, 4, 5, 6, 7};
  d.labels = {3, 1};
  // python3 -c "import hashlib; print(hashlib.sha256(bytes([0,1,2,3,4,5,6,7,3,1])).hexdigest())"
  CHECK(eval::dataset_sha256(d) ==
        "2c8418e938a832dbb84b3be892ecf2035fe7503608f2812c6c062e3ebbbff536");
}

// The state file (--state-dir/sa-state.json): what must survive a restart
// so that no (key, sequence number) pair is used twice and no accepted
// packet can be replayed.
//
// Records are keyed by the key material, never by the SA's name or SPI: a
// renamed SA, or the same key configured again after it was removed, finds
// its record; a new key under an old name does not. An SA's key ids are
// HMAC-SHA-256(salt, label || kind || length || key), truncated to 128
// bits, one per key the SA has (encryption key with its salt, integrity
// key). The salt is 32 random bytes kept in the file: the same key gets
// unrelated ids on two hosts, and no table can be precomputed; testing a
// guessed key against an id costs one HMAC, as testing it against a
// captured packet's ICV already does, so a key is as hard to find as its
// entropy makes it. The algorithm is left out on purpose: GCM with a
// 12- and a 16-byte ICV, or GCM and CTR, build the same counter blocks from
// the same key, so a key reused under another algorithm must continue too.
// SAs without keys are keyed by name and SPI (nothing to protect).
//
// Each record is a ceiling: outbound, no sequence number above it has been
// sent; inbound, none above it has been accepted. Records of SAs no longer
// configured stay, so that the same key configured again continues above
// them. A value only grows, except when a clean stop settles it to what was
// really used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipsentry/filters/config.hpp"

namespace ipsentry::enforce {

/// The state file cannot be read or written. Enforcement refuses to start
/// rather than restart sequence numbers it may already have used.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class SeqSide : std::uint8_t { sent, accepted };

/// The key ids of an SA (see above) under `salt`.
[[nodiscard]] std::vector<std::string> sa_key_ids(const filters::SaConfig& sa, std::span<const std::uint8_t> salt);

class SaStateFile {
 public:
  /// A new, empty state with a fresh salt.
  SaStateFile();
  /// Reads `path`; a missing file gives a new, empty state. Throws
  /// StateError when the file exists but cannot be read or understood.
  static SaStateFile load(const std::filesystem::path& path);

  [[nodiscard]] std::span<const std::uint8_t> salt() const noexcept { return salt_; }
  [[nodiscard]] std::vector<std::string> key_ids(const filters::SaConfig& sa) const { return sa_key_ids(sa, salt_); }

  /// The highest ceiling recorded for any of `ids` (0: none). `sa` is
  /// also looked up by name and SPI among records of the first file format,
  /// which had no key ids.
  [[nodiscard]] std::uint64_t ceiling(SeqSide side, const std::vector<std::string>& ids,
                                      const filters::SaConfig& sa) const;
  /// Raises the record of every id to at least `value`.
  void raise(SeqSide side, const std::vector<std::string>& ids, std::uint64_t value, const std::string& sa_name);
  /// Sets the records of `ids` to exactly `value` (what a stopped SA really
  /// used). Callers settle every SA sharing an id with the largest value.
  void settle(SeqSide side, const std::vector<std::string>& ids, std::uint64_t value, const std::string& sa_name);

  [[nodiscard]] std::string text() const;
  /// Writes atomically: a temporary file, fsync, rename, fsync of the
  /// directory. Throws StateError; the file on disk is then unchanged.
  void save(const std::filesystem::path& path) const;
  [[nodiscard]] std::size_t size() const noexcept { return records_[0].size() + records_[1].size(); }

 private:
  struct Record {
    std::uint64_t ceiling = 0;
    std::string sa;  // the name it last had, for people reading the file
  };
  std::vector<std::uint8_t> salt_;
  std::map<std::string, Record> records_[2];  // by SeqSide
  // Format 1 (name -> {spi, out_seq_ceiling | in_replay_top}), kept as read.
  std::map<std::string, std::pair<std::uint32_t, std::uint64_t>> legacy_out_;
  std::map<std::string, std::pair<std::uint32_t, std::uint64_t>> legacy_in_;
};

}  // namespace ipsentry::enforce

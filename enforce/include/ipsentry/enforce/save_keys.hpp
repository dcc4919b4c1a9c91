// `ipsentry enforce --save-keys DIR`: the keys IKE negotiated, written as
// Wireshark's UAT files so that `ipsentry verify --keys-from
// wireshark-ikev2 DIR/ikev2_decryption_table --keys-from wireshark
// DIR/esp_sa` and tshark (with DIR as its configuration directory) decrypt
// and check a capture of the traffic.
//
// Only on the user's request: nothing else in enforcement writes a key
// anywhere. DIR is created mode 0700 and must belong to us with nobody
// else able to write into it; both files are mode 0600 and are rewritten
// atomically (a temporary file, fsync, rename) at every change, so a
// reader never sees half a file.
//
// The rewrites run on a writer thread of their own: two fsyncs take tens
// of milliseconds, which on the IKE thread capped negotiations at a few
// dozen a second. The IKE thread adds a row and asks for a rewrite
// (write_later); rewrites asked for while one is pending coalesce into one
// (a queue bounded at one pending rewrite, which writes every row added
// before it starts), and flush() waits until the files hold every row.
//
// Rows are never removed, not even for deleted or rekeyed SAs, and rows
// already in the files when enforcement starts are kept: a capture spans
// rekeys and restarts, and every SA it shows needs its row. An SA's row
// is a hundred-odd bytes, a few kilobytes a day per peer at the seeds'
// 15-minute rekeying; delete the files to start afresh.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipsentry/filters/config.hpp"
#include "ipsentry/filters/ike_proposal.hpp"

namespace ipsentry::enforce {

/// Wireshark's name of an IKEv2 encryption algorithm ("AES-CBC-256
/// [RFC3602]", "AES-GCM-128 with 16 octet ICV [RFC5282]"); nullopt when its
/// IKEv2 decryption table has none (ChaCha20-Poly1305, DES, ...).
[[nodiscard]] std::optional<std::string> wireshark_ikev2_encryption(const filters::KeyedCipher& c);
/// Wireshark's name of an IKEv2 integrity algorithm ("HMAC_SHA2_256_128
/// [RFC4868]", "NONE [RFC4306]" for AEAD ciphers).
[[nodiscard]] std::optional<std::string> wireshark_ikev2_integrity(filters::Integrity i);

/// One row of ikev2_decryption_table. nullopt with `why` when Wireshark
/// has no name for an algorithm.
[[nodiscard]] std::optional<std::string> ikev2_decryption_row(std::uint64_t spi_i, std::uint64_t spi_r,
                                                              const filters::KeyedCipher& encryption,
                                                              filters::Integrity integrity,
                                                              const filters::SecretBytes& sk_ei,
                                                              const filters::SecretBytes& sk_er,
                                                              const filters::SecretBytes& sk_ai,
                                                              const filters::SecretBytes& sk_ar, std::string& why);

class KeyFiles {
 public:
  static constexpr const char* kIkeFile = "ikev2_decryption_table";
  static constexpr const char* kEspFile = "esp_sa";

  /// How each rewrite of the writer thread went: `error` empty when both
  /// files were written, else why not. Called on the writer thread.
  using Written = std::function<void(const std::string& error)>;

  /// Creates or checks DIR, reads the rows already in its files and
  /// rewrites them at once (on this thread), then starts the writer.
  /// Throws std::runtime_error naming the directory or file.
  explicit KeyFiles(std::filesystem::path dir, Written written = {});
  /// Writes what is pending, then stops the writer.
  ~KeyFiles();
  KeyFiles(const KeyFiles&) = delete;
  KeyFiles& operator=(const KeyFiles&) = delete;

  /// Adds an IKE SA's row (a rekeyed IKE SA has new SPIs: a new row).
  /// False with `why` when it cannot be written.
  bool add_ike(std::uint64_t spi_i, std::uint64_t spi_r, const filters::KeyedCipher& encryption,
               filters::Integrity integrity, const filters::SecretBytes& sk_ei, const filters::SecretBytes& sk_er,
               const filters::SecretBytes& sk_ai, const filters::SecretBytes& sk_ar, std::string& why);
  /// Adds an ESP SA's row. Behind a NAT the addresses on the wire depend on
  /// where the capture was taken, so such SAs match any address (their SPI
  /// tells them apart). False with `why` for AH and algorithms Wireshark
  /// cannot name.
  bool add_esp(const filters::SaConfig& sa, std::string& why);
  /// Rewrites both files now, on the calling thread. Throws std::runtime_error.
  void write() const;
  /// Asks the writer thread to rewrite both files with every row added so
  /// far; returns at once. The outcome goes to `written`.
  void write_later();
  /// Waits until every rewrite asked for is done (enforcement stopping:
  /// the files are current when it exits).
  void flush();

  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }
  [[nodiscard]] std::size_t ike_rows() const;
  [[nodiscard]] std::size_t esp_rows() const;
  /// Rewrites the writer thread has finished (fewer than asked for: coalesced).
  [[nodiscard]] std::uint64_t rewrites() const;

 private:
  void writer_main();

  std::filesystem::path dir_;
  Written written_;
  mutable std::mutex mu_;         // the rows and the generations below
  std::condition_variable cv_;    // write_later -> writer; writer -> flush
  std::vector<std::string> ike_;  // key material: wiped when dropped
  std::vector<std::string> esp_;
  std::uint64_t asked_ = 0;  // rewrites asked for (a generation)
  std::uint64_t done_ = 0;   // the generation the files hold
  std::uint64_t rewrites_ = 0;
  bool stopping_ = false;
  std::thread writer_;  // last: started when everything above exists
};

}  // namespace ipsentry::enforce

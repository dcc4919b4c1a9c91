// The Security Association Database (RFC 4301 section 4.4.2).
//
// A SecurityAssociation joins the immutable configured SA with its runtime
// state: keyed crypto contexts, the replay window, the outbound sequence
// number and the counters. Lookups (SPI + destination + protocol, falling
// back to SPI alone and to any-SPI defaults) allocate nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ipsentry/dissect/ip_address.hpp"
#include "ipsentry/filters/config.hpp"
#include "ipsentry/ipsec/counters.hpp"
#include "ipsentry/ipsec/crypto.hpp"
#include "ipsentry/ipsec/crypto_backend.hpp"
#include "ipsentry/ipsec/esp_transform.hpp"
#include "ipsentry/ipsec/replay.hpp"
#include "ipsentry/ipsec/verdict.hpp"

namespace ipsentry::ipsec {

class SecurityAssociation {
 public:
  /// `choice` picks the backend of the ESP transform (see EspTransform).
  SecurityAssociation(filters::SaConfig config, std::uint32_t index, CryptoChoice choice = CryptoChoice::auto_);

  [[nodiscard]] const filters::SaConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::uint32_t index() const noexcept { return index_; }
  [[nodiscard]] const std::string& name() const noexcept { return config_.name; }
  /// Why packets on this SA cannot be processed (nullopt when they can).
  [[nodiscard]] std::optional<Reason> unsupported() const noexcept { return unsupported_; }
  [[nodiscard]] const std::string& unsupported_detail() const noexcept { return unsupported_detail_; }

  [[nodiscard]] EspTransform* esp() noexcept { return esp_.get(); }
  [[nodiscard]] const EspTransform* esp() const noexcept { return esp_.get(); }
  [[nodiscard]] crypto::Mac* ah_mac() noexcept { return ah_mac_.get(); }
  [[nodiscard]] std::size_t ah_icv_len() const noexcept { return ah_icv_len_; }
  [[nodiscard]] bool ah_checks() const noexcept { return ah_mac_ != nullptr; }

  ReplayWindow replay;
  SaCounters counters;
  std::uint64_t last_sent_seq = 0;  // outbound: the last sequence number used
  /// Set by enforcement from its state file (RFC 4303 sections 3.3.3 and
  /// 3.4.3 across restarts): no sequence number above send_ceiling is sent,
  /// none above accept_ceiling is accepted, until the file records more.
  /// From record_at on, the engine asks for more to be recorded. Unlimited
  /// unless set (verify, protect).
  static constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};
  std::atomic<std::uint64_t> send_ceiling{kUnlimited};
  std::atomic<std::uint64_t> accept_ceiling{kUnlimited};
  std::atomic<std::uint64_t> record_at{kUnlimited};
  /// The highest sequence number a worker waits to have recorded.
  std::atomic<std::uint64_t> wanted{0};
  /// Held by a worker while it processes a packet of this SA when several
  /// workers share the SAD.
  std::mutex mutex;

 private:
  filters::SaConfig config_;
  std::uint32_t index_;
  std::optional<Reason> unsupported_;
  std::string unsupported_detail_;
  std::unique_ptr<EspTransform> esp_;
  std::unique_ptr<crypto::Mac> ah_mac_;
  std::size_t ah_icv_len_ = 0;
  friend class Sad;  // renumbers SAs after a removal
};

class Sad {
 public:
  Sad() = default;
  explicit Sad(CryptoChoice choice) : crypto_(choice) {}
  /// Installs the SAs: keys every crypto context once, on the backends
  /// `choice` allows (also for SAs add()ed later). SAs whose algorithm no
  /// backend can provide are kept, marked unsupported.
  explicit Sad(std::vector<filters::SaConfig> sas, CryptoChoice choice = CryptoChoice::auto_);

  /// The backend choice SAs are installed with.
  [[nodiscard]] CryptoChoice crypto() const noexcept { return crypto_; }

  /// RFC 4301 section 4.1 lookup: the most specific SA for (SPI, protocol,
  /// destination[, source]); SAs configured without a destination match any
  /// destination; any-SPI SAs come last.
  [[nodiscard]] SecurityAssociation* lookup(std::uint32_t spi, filters::IpsecProtocol protocol,
                                            const dissect::IpAddr& dst, const dissect::IpAddr& src) noexcept;
  [[nodiscard]] SecurityAssociation* find(std::string_view name) noexcept;
  /// Installs one more SA while the SAD is in use (an SA learned from a live
  /// IKE negotiation). Not safe against concurrent lookups: only the thread
  /// that does the lookups may add.
  SecurityAssociation& add(filters::SaConfig sa);
  /// add() for an SA learned from IKE, unless a configured SA already
  /// covers its SPI and destination (the configured one wins). Returns the
  /// new SA, or nullptr when it was covered.
  SecurityAssociation* add_learned(filters::SaConfig sa);
  /// Removes the SA at `index` (a negotiated SA that was deleted or
  /// rekeyed): lookups no longer find it, and the SAs after it move down
  /// one index. Not safe against concurrent lookups or against anybody
  /// holding a pointer to it: enforcement removes under its state lock,
  /// held exclusively.
  void remove(std::size_t index);
  [[nodiscard]] std::size_t size() const noexcept { return sas_.size(); }
  [[nodiscard]] SecurityAssociation& at(std::size_t i) noexcept { return *sas_[i]; }
  [[nodiscard]] const SecurityAssociation& at(std::size_t i) const noexcept { return *sas_[i]; }

 private:
  static std::uint64_t key(std::uint32_t spi, filters::IpsecProtocol p) noexcept {
    return (std::uint64_t{spi} << 8) | static_cast<std::uint8_t>(p);
  }
  CryptoChoice crypto_ = CryptoChoice::auto_;
  std::vector<std::unique_ptr<SecurityAssociation>> sas_;
  void index(SecurityAssociation* sa);
  std::unordered_map<std::uint64_t, std::vector<SecurityAssociation*>> by_spi_;
  std::vector<SecurityAssociation*> any_spi_;
};

}  // namespace ipsentry::ipsec

// The responder's DoS gate (RFC 7296 2.6, charon's thresholds): half-open
// IKE SAs counted in total and per source address, stateless cookies
// demanded past a threshold, a hard limit past which IKE_SA_INIT requests
// are dropped.
#include "state.hpp"

namespace ipsentry::ike::v2::detail {

namespace {
filters::SecretBytes random_secret(Random& random) {
  Buffer b = random_bytes(random, 32);
  filters::SecretBytes s(b);
  filters::cleanse(b.data(), b.size());
  return s;
}
constexpr TimeNs kCookieSecretLifetime = 120 * kSecond;  // the previous secret stays valid one more period
constexpr TimeNs kCookiesStayOn = 10 * kSecond;
constexpr std::size_t kCookieLen = 1 + 32;  // version, SHA-256
}  // namespace

void DosGate::start(Random& random, TimeNs now) {
  secret_ = random_secret(random);
  rotate_at_ = now + kCookieSecretLifetime;
}

bool DosGate::cookie_required(const dissect::IpAddr& ip, TimeNs now, bool& turned_on) {
  turned_on = false;
  if (total_ >= options_->cookie_threshold) {
    turned_on = !cookies_on(now);
    on_until_ = now + kCookiesStayOn;
    was_on_ = true;
    return true;
  }
  auto it = per_ip_.find(ip);
  return cookies_on(now) || (it != per_ip_.end() && it->second >= options_->cookie_threshold_per_ip);
}

Buffer DosGate::compute(const filters::SecretBytes& secret, std::uint8_t version, Bytes ni, const dissect::IpAddr& ip,
                        std::uint64_t spi_i) const {
  std::uint8_t spi[8];
  for (int i = 0; i < 8; ++i) spi[i] = static_cast<std::uint8_t>(spi_i >> (56 - 8 * i));
  Buffer h = hash(filters::Prf::hmac_sha256, {secret.bytes(), ni, Bytes(ip.data(), ip.size()), Bytes(spi, 8)});
  Buffer c;
  c.reserve(kCookieLen);
  c.push_back(version);
  c.insert(c.end(), h.begin(), h.end());
  return c;
}

Buffer DosGate::make(Bytes ni, const dissect::IpAddr& ip, std::uint64_t spi_i) const {
  return compute(secret_, version_, ni, ip, spi_i);
}

bool DosGate::check(Bytes cookie, Bytes ni, const dissect::IpAddr& ip, std::uint64_t spi_i) const {
  if (cookie.size() != kCookieLen) return false;
  const std::uint8_t v = cookie[0];
  const filters::SecretBytes* secret = nullptr;
  if (v == version_) {
    secret = &secret_;
  } else if (v == static_cast<std::uint8_t>(version_ - 1) && !previous_.empty()) {
    secret = &previous_;
  } else {
    return false;
  }
  return equal_const(cookie, compute(*secret, v, ni, ip, spi_i));
}

bool DosGate::over_limit() const noexcept { return total_ >= options_->half_open_limit; }

void DosGate::add(const dissect::IpAddr& ip) {
  ++total_;
  ++per_ip_[ip];
}

void DosGate::remove(const dissect::IpAddr& ip) {
  if (total_ > 0) --total_;
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;
  if (--it->second == 0) per_ip_.erase(it);
}

bool DosGate::tick(Random& random, TimeNs now) {
  if (now >= rotate_at_) {
    previous_ = std::move(secret_);
    secret_ = random_secret(random);
    ++version_;
    rotate_at_ = now + kCookieSecretLifetime;
  }
  if (was_on_ && !cookies_on(now)) {
    was_on_ = false;
    return true;
  }
  return false;
}

TimeNs DosGate::next_deadline() const noexcept { return was_on_ ? std::min(rotate_at_, on_until_) : rotate_at_; }

}  // namespace ipsentry::ike::v2::detail

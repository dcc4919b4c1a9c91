#include "ipsentry/ipsec/sad.hpp"

#include <algorithm>

namespace ipsentry::ipsec {

SecurityAssociation::SecurityAssociation(filters::SaConfig config, std::uint32_t index, CryptoChoice choice)
    : replay(config.replay_window, config.esn), config_(std::move(config)), index_(index) {
  last_sent_seq = config_.initial_seq;
  const auto& ci = filters::cipher_info(config_.cipher);
  const auto& ii = filters::integrity_info(config_.integrity);
  if (!ci.supported) {
    unsupported_ = Reason::unsupported_cipher;
    unsupported_detail_ = std::string(ci.name) + " is obsolete and not supported";
    return;
  }
  if (!ii.supported) {
    unsupported_ = Reason::unsupported_integrity;
    unsupported_detail_ = std::string(ii.name) + " is not supported";
    return;
  }
  try {
    if (config_.protocol == filters::IpsecProtocol::esp) {
      esp_ = std::make_unique<EspTransform>(config_, choice);
    } else {
      ah_icv_len_ = ii.icv_len;
      if (ii.checks) ah_mac_ = crypto::make_mac(config_.integrity, config_.auth_key.bytes());
    }
  } catch (const crypto::CryptoError& e) {
    unsupported_ = Reason::unsupported_cipher;
    unsupported_detail_ = e.what();
  }
}

Sad::Sad(std::vector<filters::SaConfig> sas, CryptoChoice choice) : crypto_(choice) {
  crypto::init_providers();
  sas_.reserve(sas.size());
  for (auto& cfg : sas) add(std::move(cfg));
}

namespace {
// Most specific first: destination and source, destination, source, neither.
int specificity(const SecurityAssociation* s) { return (s->config().dst ? 2 : 0) + (s->config().src ? 1 : 0); }
}  // namespace

void Sad::index(SecurityAssociation* sa) {
  const auto& c = sa->config();
  auto& list = c.spi ? by_spi_[key(*c.spi, c.protocol)] : any_spi_;
  // Insert after every SA at least as specific, so equal ones keep their order.
  auto at = std::find_if(list.begin(), list.end(),
                         [&](const SecurityAssociation* s) { return specificity(s) < specificity(sa); });
  list.insert(at, sa);
}

SecurityAssociation& Sad::add(filters::SaConfig sa) {
  crypto::init_providers();
  auto idx = static_cast<std::uint32_t>(sas_.size());
  sas_.push_back(std::make_unique<SecurityAssociation>(std::move(sa), idx, crypto_));
  index(sas_.back().get());
  return *sas_.back();
}

SecurityAssociation* Sad::add_learned(filters::SaConfig sa) {
  for (const auto& s : sas_) {
    if (s->config().covers(sa)) return nullptr;
  }
  return &add(std::move(sa));
}

void Sad::remove(std::size_t i) {
  SecurityAssociation* sa = sas_.at(i).get();
  const auto& c = sa->config();
  auto unlist = [&](std::vector<SecurityAssociation*>& list) { std::erase(list, sa); };
  if (c.spi) {
    if (auto it = by_spi_.find(key(*c.spi, c.protocol)); it != by_spi_.end()) {
      unlist(it->second);
      if (it->second.empty()) by_spi_.erase(it);
    }
  } else {
    unlist(any_spi_);
  }
  sas_.erase(sas_.begin() + static_cast<std::ptrdiff_t>(i));
  for (std::size_t j = i; j < sas_.size(); ++j) sas_[j]->index_ = static_cast<std::uint32_t>(j);
}

SecurityAssociation* Sad::lookup(std::uint32_t spi, filters::IpsecProtocol protocol, const dissect::IpAddr& dst,
                                 const dissect::IpAddr& src) noexcept {
  auto matches = [&](const SecurityAssociation* s) {
    const auto& c = s->config();
    if (c.protocol != protocol) return false;
    if (c.dst && *c.dst != dst) return false;
    if (c.src && *c.src != src) return false;
    return true;
  };
  if (auto it = by_spi_.find(key(spi, protocol)); it != by_spi_.end()) {
    for (auto* s : it->second) {
      if (matches(s)) return s;
    }
  }
  for (auto* s : any_spi_) {
    if (matches(s)) return s;
  }
  return nullptr;
}

SecurityAssociation* Sad::find(std::string_view name) noexcept {
  for (auto& s : sas_) {
    if (s->name() == name) return s.get();
  }
  return nullptr;
}

}  // namespace ipsentry::ipsec

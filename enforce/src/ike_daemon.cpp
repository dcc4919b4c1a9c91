// The production IkeProtocol: ike::v2::Daemon, unchanged.
#include "ipsentry/enforce/ike_driver.hpp"

namespace ipsentry::enforce {

namespace {

class DaemonProtocol final : public IkeProtocol {
 public:
  DaemonProtocol(const filters::Config& config, const filters::LocalAddresses& local, ike::v2::Options options)
      : d_(config, local, options) {}
  void receive(const ike::v2::Datagram& d, ike::v2::TimeNs now, ike::v2::Actions& out) override {
    d_.receive(d, now, out);
  }
  void acquire(const ike::v2::Acquire& a, ike::v2::TimeNs now, ike::v2::Actions& out) override {
    d_.acquire(a, now, out);
  }
  void expired(std::uint64_t child, bool hard, ike::v2::TimeNs now, ike::v2::Actions& out) override {
    d_.expired(child, hard, now, out);
  }
  void nat_mapping(std::uint64_t child, const ike::v2::Endpoint& from, ike::v2::TimeNs now,
                   ike::v2::Actions& out) override {
    d_.nat_mapping(child, from, now, out);
  }
  void tick(ike::v2::TimeNs now, ike::v2::Actions& out) override { d_.tick(now, out); }
  [[nodiscard]] ike::v2::TimeNs next_deadline() const noexcept override { return d_.next_deadline(); }
  void reconfigure(const filters::Config& config, const filters::LocalAddresses& local, ike::v2::TimeNs now,
                   ike::v2::Actions& out) override {
    d_.reconfigure(config, local, now, out);
  }
  void shutdown(ike::v2::TimeNs now, ike::v2::Actions& out) override { d_.shutdown(now, out); }
  [[nodiscard]] ike::v2::Snapshot snapshot(ike::v2::TimeNs now) const override { return d_.snapshot(now); }

 private:
  ike::v2::Daemon d_;
};

}  // namespace

std::unique_ptr<IkeProtocol> make_ike_daemon(const filters::Config& config, const filters::LocalAddresses& local,
                                             ike::v2::Options options) {
  return std::make_unique<DaemonProtocol>(config, local, options);
}

}  // namespace ipsentry::enforce

// The plain data types: inspect() overloads (for CAF 0.17 serialization,
// checked here with a field-collecting inspector, no CAF needed).
#include <doctest/doctest.h>

#include <type_traits>

#include "protocols/raft/types.hpp"

using namespace dsync::raft;

namespace {

// Mimics the CAF 0.17 inspector protocol: f(fields...) returns result_type.
struct counting_inspector {
  using result_type = int;
  size_t fields = 0;
  template <class... Ts>
  int operator()(Ts&... xs) {
    fields += sizeof...(Ts);
    (visit(xs), ...);
    return 0;
  }
  template <class T>
  void visit(T& x) {
    if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T> || std::is_same_v<T, std::string>) {
      (void) x;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      (void) x;
    } else if constexpr (std::is_same_v<T, std::vector<entry>>) {
      for (auto& e : x)
        inspect(*this, e);
    } else {
      inspect(*this, x);
    }
  }
};

} // namespace

TEST_CASE("types: every message field is visited by inspect") {
  message m;
  m.entries.push_back(entry{1, 1, entry_type::noop, ""});
  counting_inspector f;
  inspect(f, m);
  // 18 message fields + 4 of the entry + 3 of snapshot_metadata + 2 of configuration.
  CHECK(f.fields == 18 + 4 + 3 + 2);
  hard_state hs;
  counting_inspector g;
  inspect(g, hs);
  CHECK(g.fields == 3);
}

TEST_CASE("types: enums print by name and describe() gives one trace line") {
  CHECK(std::string(to_string(message_type::install_snapshot)) == "install_snapshot");
  CHECK(std::string(to_string(errc::not_leader)) == "not_leader");
  CHECK(std::string(to_string(role::pre_candidate)) == "pre_candidate");
  message m;
  m.type = message_type::append_entries;
  m.from = "n1";
  m.to = "n2";
  m.term = 3;
  m.index = 4;
  auto line = describe(m);
  CHECK(line.find("n1->n2 append_entries t3") == 0);
  CHECK(to_string(configuration{{"a", "b"}, {"c"}}) == "voters{a,b} learners{c}");
}

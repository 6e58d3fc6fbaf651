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
  size_t fields = 0;     // every field visited, nested ones included
  size_t top_level = 0;  // the fields of the inspected type itself (the first call)
  template <class... Ts>
  int operator()(Ts&... xs) {
    if (fields == 0) top_level = sizeof...(Ts);
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

// The number of members of an aggregate: the most initializers T{...} accepts (each one
// converts to whatever its member is).
struct any_member {
  template <class T>
  operator T() const;
};
template <class T, class... Init>
constexpr auto braces_ok(int) -> decltype(T{Init{}...}, true) {
  return true;
}
template <class T, class... Init>
constexpr bool braces_ok(...) {
  return false;
}
template <class T, class... Init>
constexpr size_t member_count() {
  if constexpr (braces_ok<T, Init..., any_member>(0)) return member_count<T, Init..., any_member>();
  else return sizeof...(Init);
}

template <class T>
size_t inspected_members(T x) {
  counting_inspector f;
  inspect(f, x);
  return f.top_level;
}

} // namespace

TEST_CASE("types: every member of the wire types is visited by inspect") {
  // A member added to a struct but not to its inspect() would be lost on the wire.
  CHECK(inspected_members(message{}) == member_count<message>());
  CHECK(inspected_members(entry{}) == member_count<entry>());
  CHECK(inspected_members(hard_state{}) == member_count<hard_state>());
  CHECK(inspected_members(snapshot_metadata{}) == member_count<snapshot_metadata>());
  CHECK(inspected_members(configuration{}) == member_count<configuration>());
  message m;
  m.entries.push_back(entry{1, 1, entry_type::noop, ""});
  counting_inspector f;
  inspect(f, m);
  // Nested ones too: 18 message fields + 4 of the entry + 3 of snapshot_metadata + 2 of configuration.
  CHECK(f.fields == 18 + 4 + 3 + 2);
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

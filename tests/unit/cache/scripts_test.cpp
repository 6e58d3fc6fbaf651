// Runs the scenario scripts in scripts/*.txt (see script_driver.hpp for the format) and
// checks that, together, the scripts of each protocol take every transition of that
// protocol's tables in protocols/cache/README.md — and no transition the tables lack.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "tests/unit/cache/script_driver.hpp"

namespace fs = std::filesystem;
using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {

fs::path here() { return fs::path(__FILE__).parent_path(); }

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

using transition_set = std::set<std::pair<std::string, std::string>>;

// Tables in the README are introduced by a line "<!-- table: <proto> <cache|directory> -->";
// every non-empty cell other than "—" is a transition (row state, column event).
transition_set documented(const std::string& readme, const std::string& proto, const std::string& part) {
  transition_set out;
  std::istringstream in(readme);
  std::string line;
  const std::string marker = "<!-- table: " + proto + " " + part + " -->";
  bool in_table = false;
  std::vector<std::string> header;
  auto cells = [](const std::string& l) {
    std::vector<std::string> c;
    std::string cur;
    for (size_t i = 1; i < l.size(); ++i) {
      if (l[i] == '|') {
        auto b = cur.find_first_not_of(' ');
        auto e = cur.find_last_not_of(' ');
        c.push_back(b == std::string::npos ? "" : cur.substr(b, e - b + 1));
        cur.clear();
      } else {
        cur += l[i];
      }
    }
    return c;
  };
  while (std::getline(in, line)) {
    if (line.find(marker) != std::string::npos) {
      in_table = true;
      header.clear();
      continue;
    }
    if (!in_table) continue;
    if (line.empty() || line[0] != '|') {
      if (!header.empty()) in_table = false;
      continue;
    }
    auto c = cells(line);
    if (header.empty()) {
      header = c;
      continue;
    }
    if (!c.empty() && c[0].find("---") != std::string::npos) continue;
    for (size_t i = 1; i < c.size() && i < header.size(); ++i) {
      if (c[i].empty() || c[i] == "—") continue;
      auto row = c[0];
      // "`IS^D`" -> IS^D
      row.erase(std::remove(row.begin(), row.end(), '`'), row.end());
      auto col = header[i];
      col.erase(std::remove(col.begin(), col.end(), '`'), col.end());
      out.emplace(row, col);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("scenario scripts produce their expected output") {
  const bool rewrite = std::getenv("DSYNC_REWRITE_SCRIPTS") != nullptr;
  std::map<std::string, transition_set> cache_seen, dir_seen;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(here() / "scripts"))
    if (e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  for (const auto& f : files) {
    CAPTURE(f.filename().string());
    script_runner runner;
    auto text = read_all(f);
    auto res = runner.run(text);
    if (rewrite && res.rewritten != text) {
      std::ofstream(f, std::ios::binary) << res.rewritten;
    } else {
      CHECK_MESSAGE(res.failures.empty(), res.failures);
    }
    auto proto = res.proto;
    for (const auto& [k, n] : res.cache_transitions) cache_seen[proto].insert(k);
    for (const auto& [k, n] : res.dir_transitions) dir_seen[proto].insert(k);
  }

  const auto readme = read_all(here().parent_path().parent_path().parent_path() / "protocols" / "cache" / "README.md");
  for (const std::string proto : {"MESI", "MOSI", "MOESI"}) {
    for (const std::string part : {"cache", "directory"}) {
      CAPTURE(proto);
      CAPTURE(part);
      auto doc = documented(readme, proto, part);
      CHECK(!doc.empty());
      const auto& seen = part == "cache" ? cache_seen[proto] : dir_seen[proto];
      std::string missing, extra;
      for (const auto& t : doc)
        if (!seen.count(t)) missing += "  " + t.first + " x " + t.second + "\n";
      for (const auto& t : seen)
        if (!doc.count(t)) extra += "  " + t.first + " x " + t.second + "\n";
      const std::string missing_msg = "documented but never driven by a script:\n" + missing;
      const std::string extra_msg = "taken by a script but not in the README table:\n" + extra;
      CHECK_MESSAGE(missing.empty(), missing_msg);
      CHECK_MESSAGE(extra.empty(), extra_msg);
    }
  }
}

// Scenario scripts for the coherence protocols (etcd's data-driven tests in spirit).
//
// A script is a list of commands, each followed by "----" and the output it must
// produce, up to a blank line. Set DSYNC_REWRITE_SCRIPTS=1 to rewrite the expected
// output from what the code does (then read the diff!). Lines starting with '#' are
// comments. Commands:
//
//   init proto=mesi|mosi|moesi nodes=a,b,c home=x:c,y:b [policy=write-back|write-through]
//        [capacity=N] [replacement=lru|lfu]
//                               epoch 1 (keys not listed live on the first node); every
//                               node starts and the epoch barrier is run
//   get|put|del|inval NODE KEY [VALUE]    a client request (ids #1, #2, ... in order)
//   expire NODE ID              the client gives up on request #ID
//   deliver FROM->TO [KIND]     the head message of the channel from FROM to TO
//                               (FROM/TO: a node, or node.ctl / node.dir; KIND checks it)
//   mem NODE [read|write|erase] [KEY]   the oldest matching memory operation of NODE's
//                               directory completes
//   run [hold=A->B,...]         deliver and complete everything until quiet (but the
//                               channels from A to B)
//   kill NODE [keep] [lost-writes]   NODE dies; by default its messages in flight are
//                               lost ("keep": delivered) and its memory writes land
//   epoch E members=a,c home=x:a     define epoch E
//   give NODE[.ctl|.dir]|all E  hand epoch E to a component (node: both)
//   restart NODE E              NODE comes back empty in epoch E
//   state                       print every key's states
//
// Output: every message sent ("a.ctl->c.dir get_s x txn=1 e1"), memory operation
// issued ("c.dir mem read x"), completion ("a: #1 get x ok v1 (S)"), then one line per
// key: each live node's state, and every directory with something on the key
// ("x: a=S b=I c=I | c.dir=S sharers=a"). "run" prints completions and states only.
// After every command the coherence invariants are checked and any unexpected message
// a component counted is reported.
#pragma once

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/cache/cluster.hpp"

namespace dsync::cache::testing {

struct script_result {
  std::string failures;   // empty if every output matched
  std::string rewritten;  // the script with actual outputs
  // Transitions taken, summed over every node of every init in the script.
  std::map<std::pair<std::string, std::string>, uint64_t> cache_transitions;
  std::map<std::pair<std::string, std::string>, uint64_t> dir_transitions;
  std::string proto;      // of the last init
};

class script_runner {
 public:
  script_result run(const std::string& text) {
    std::vector<std::string> lines;
    {
      std::istringstream in(text);
      std::string l;
      while (std::getline(in, l)) lines.push_back(l);
    }
    script_result res;
    std::ostringstream out;
    size_t i = 0;
    while (i < lines.size()) {
      const std::string& l = lines[i];
      if (l.empty() || l[0] == '#') {
        out << l << "\n";
        ++i;
        continue;
      }
      const std::string cmd = l;
      const size_t cmd_line = i + 1;
      ++i;
      if (i >= lines.size() || lines[i] != "----") {
        res.failures += "line " + std::to_string(cmd_line) + ": command without ----\n";
        out << cmd << "\n";
        continue;
      }
      ++i;
      std::string expected;
      while (i < lines.size() && !lines[i].empty()) expected += lines[i++] + "\n";
      std::string actual;
      try {
        actual = execute(cmd, res);
      } catch (const std::exception& e) {
        actual = std::string("error: ") + e.what() + "\n";
      }
      if (actual != expected)
        res.failures += "line " + std::to_string(cmd_line) + ": " + cmd + "\n--- expected\n" + expected +
                        "--- actual\n" + actual;
      out << cmd << "\n----\n" << actual;
      if (i < lines.size()) {
        out << "\n";
        ++i;  // the blank line
      }
    }
    collect(res);
    res.rewritten = out.str();
    return res;
  }

 private:
  static std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
      if (c == sep) {
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
  }

  static std::map<std::string, std::string> options_of(const std::vector<std::string>& words, size_t from) {
    std::map<std::string, std::string> o;
    for (size_t i = from; i < words.size(); ++i) {
      auto eq = words[i].find('=');
      if (eq == std::string::npos) o[words[i]] = "";
      else o[words[i].substr(0, eq)] = words[i].substr(eq + 1);
    }
    return o;
  }

  membership make_membership(uint64_t e, const std::vector<std::string>& members, const std::string& homes) {
    std::map<std::string, std::string> home;
    for (const auto& kv : split(homes, ',')) {
      auto c = kv.find(':');
      if (c == std::string::npos) throw std::runtime_error("home needs key:node");
      home[kv.substr(0, c)] = kv.substr(c + 1);
      keys_.insert(kv.substr(0, c));
    }
    membership m;
    m.epoch = e;
    m.members = members;
    std::string first = members.front();
    m.home = [home, first](std::string_view k) {
      auto it = home.find(std::string(k));
      return it == home.end() ? first : it->second;
    };
    return m;
  }

  endpoint parse_endpoint(const std::string& s, bool& exact) {
    auto dot = s.find('.');
    exact = dot != std::string::npos;
    if (!exact) return endpoint{s, false};
    auto part = s.substr(dot + 1);
    if (part != "ctl" && part != "dir") throw std::runtime_error("bad endpoint " + s);
    return endpoint{s.substr(0, dot), part == "dir"};
  }

  static std::string val(const value& v) { return v ? *v : "<absent>"; }

  std::string execute(const std::string& line, script_result& res) {
    auto w = split(line, ' ');
    log_.clear();
    const std::string& c = w.at(0);
    bool print_messages = true;
    if (c == "init") {
      if (cl_) collect(res);
      auto o = options_of(w, 1);
      cluster::options opts;
      if (!parse(o.at("proto"), opts.proto)) throw std::runtime_error("bad proto");
      res.proto = std::string(to_string(opts.proto));
      if (o.count("policy") && !parse(o["policy"], opts.policy)) throw std::runtime_error("bad policy");
      if (o.count("replacement") && !parse(o["replacement"], opts.replacement))
        throw std::runtime_error("bad replacement");
      opts.capacity = o.count("capacity") ? std::stoul(o["capacity"]) : 16;
      opts.nodes = split(o.at("nodes"), ',');
      keys_.clear();
      next_request_ = 0;
      cl_ = std::make_unique<cluster>(opts, make_membership(1, opts.nodes, o.count("home") ? o["home"] : ""));
      cl_->on_effects = [this](const endpoint& from, const effects& fx) { record(from, fx); };
      cl_->start_all();
      cl_->run_to_quiet();
      log_.clear();
      return "ok\n";
    }
    if (!cl_) throw std::runtime_error("init first");
    auto& cl = *cl_;
    if (c == "get" || c == "put" || c == "del" || c == "inval") {
      client_op op;
      op.request = ++next_request_;
      op.kind = c == "get" ? op_kind::get : c == "put" ? op_kind::put : c == "del" ? op_kind::del : op_kind::invalidate;
      op.key = w.at(2);
      keys_.insert(op.key);
      if (op.kind == op_kind::put) op.value = w.at(3);
      cl.submit(w.at(1), op);
    } else if (c == "expire") {
      cl.expire(w.at(1), std::stoull(w.at(2)));
    } else if (c == "deliver") {
      auto arrow = w.at(1).find("->");
      if (arrow == std::string::npos) throw std::runtime_error("deliver FROM->TO");
      bool from_exact = false, to_exact = false;
      endpoint from = parse_endpoint(w.at(1).substr(0, arrow), from_exact);
      endpoint to = parse_endpoint(w.at(1).substr(arrow + 2), to_exact);
      std::vector<channel_id> match;
      for (const auto& ch : cl.channels_with_messages()) {
        if (ch.from.node != from.node || ch.to.node != to.node) continue;
        if (from_exact && ch.from.dir != from.dir) continue;
        if (to_exact && ch.to.dir != to.dir) continue;
        if (w.size() > 2 && std::string(to_string(cl.channel(ch)->front().kind)) != w[2]) continue;
        match.push_back(ch);
      }
      if (match.size() != 1)
        throw std::runtime_error(std::to_string(match.size()) + " channels match " + w.at(1) +
                                 (w.size() > 2 ? " " + w[2] : ""));
      cl.deliver(match.front());
    } else if (c == "mem") {
      const auto& in_flight = cl.memory_in_flight();
      size_t pick = in_flight.size();
      for (size_t i = 0; i < in_flight.size() && pick == in_flight.size(); ++i) {
        const auto& r = in_flight[i];
        if (r.node != w.at(1)) continue;
        if (w.size() > 2 && std::string(to_string(r.op.kind)) != w[2]) continue;
        if (w.size() > 3 && r.op.key != w[3]) continue;
        pick = i;
      }
      if (pick == in_flight.size()) throw std::runtime_error("no such memory operation in flight");
      cl.complete_memory(pick);
    } else if (c == "run") {
      print_messages = false;
      std::vector<std::pair<std::string, std::string>> held;  // (from node, to node)
      auto o = options_of(w, 1);
      if (o.count("hold"))
        for (const auto& h : split(o["hold"], ',')) {
          auto arrow = h.find("->");
          if (arrow == std::string::npos) throw std::runtime_error("hold=FROM->TO");
          held.emplace_back(h.substr(0, arrow), h.substr(arrow + 2));
        }
      for (size_t step = 0;; ++step) {
        if (step > 100000) throw std::runtime_error("not quiet");
        bool done = false;
        for (const auto& ch : cl.channels_with_messages()) {
          bool hold = false;
          for (const auto& [f, t] : held) hold = hold || (ch.from.node == f && ch.to.node == t);
          if (hold) continue;
          cl.deliver(ch);
          done = true;
          break;
        }
        if (done) continue;
        if (cl.memory_in_flight().empty()) break;
        cl.complete_memory(0);
      }
    } else if (c == "kill") {
      auto o = options_of(w, 2);
      const bool keep = o.count("keep");
      const bool lands = !o.count("lost-writes");
      cl.kill(w.at(1), [keep](const channel_id&, size_t n) { return keep ? size_t{0} : n; },
              [lands](const memory_op&) { return lands; });
    } else if (c == "epoch") {
      auto o = options_of(w, 2);
      cl.define_epoch(make_membership(std::stoull(w.at(1)), split(o.at("members"), ','), o.count("home") ? o["home"] : ""));
      return "ok\n";
    } else if (c == "give") {
      const uint64_t e = std::stoull(w.at(2));
      if (w.at(1) == "all") {
        for (const auto& id : cl.live_nodes()) {
          cl.give_epoch({id, false}, e);
          cl.give_epoch({id, true}, e);
        }
      } else {
        bool exact = false;
        endpoint ep = parse_endpoint(w.at(1), exact);
        if (!exact || !ep.dir) cl.give_epoch({ep.node, false}, e);
        if (!exact || ep.dir) cl.give_epoch({ep.node, true}, e);
      }
    } else if (c == "restart") {
      collect_node(res, cl.at(w.at(1)));  // its counters die with it
      cl.restart(w.at(1), std::stoull(w.at(2)));
    } else if (c == "state") {
      print_messages = false;
    } else {
      throw std::runtime_error("unknown command " + c);
    }
    std::string out;
    for (const auto& l : log_)
      if (print_messages || l.find(": #") != std::string::npos) out += l + "\n";
    out += states();
    for (const auto& k : keys_) {
      auto v = check_coherence(cl, k);
      if (!v.empty()) out += "VIOLATION " + v + "\n";
    }
    if (cl.wire_errors()) out += "WIRE ERRORS " + std::to_string(cl.wire_errors()) + "\n";
    for (auto& [id, n] : cl.nodes()) {
      uint64_t u = n.ctl->stats().unexpected_messages + n.dir->stats().unexpected_messages;
      if (u != reported_unexpected_[id]) {
        out += "UNEXPECTED " + id + " " + std::to_string(u) + "\n";
        reported_unexpected_[id] = u;
      }
    }
    return out;
  }

  void record(const endpoint& from, const effects& fx) {
    for (const auto& m : fx.messages)
      log_.push_back(from.name() + "->" + m.to + (for_directory(m.msg.kind) ? ".dir " : ".ctl ") + describe(m.msg));
    for (const auto& op : fx.memory)
      log_.push_back("mem " + from.node + " " + std::string(to_string(op.kind)) + " " + op.key +
                     (op.kind == memory_kind::write ? " " + op.value : ""));
    for (const auto& c : fx.completions) {
      std::string s = from.node + ": #" + std::to_string(c.request) + " " + std::string(to_string(c.kind)) + " " +
                      c.key + " " + std::string(to_string(c.result));
      if (c.result == status::error) s += " " + c.error + (c.maybe_applied ? " (maybe applied)" : "");
      else if (c.kind == op_kind::get && c.result == status::ok) s += " " + val(c.val);
      if (c.result != status::error) s += " (" + std::string(to_string(c.state)) + ")";
      log_.push_back(s);
    }
  }

  std::string states() {
    std::string out;
    for (const auto& k : keys_) {
      std::string l = k + ":";
      for (auto& [id, n] : cl_->nodes()) {
        if (!n.alive) {
          l += " " + id + "=dead";
          continue;
        }
        l += " " + id + "=" + std::string(to_string(n.ctl->state(k)));
        if (const value* v = n.ctl->data(k); v && n.ctl->state(k) != cache_state::I) {
          l += "(" + val(*v) + (n.ctl->dirty(k) ? "*" : "") + ")";
        }
      }
      std::string dirs;
      for (auto& [id, n] : cl_->nodes()) {
        if (!n.alive) continue;
        auto v = n.dir->view(k);
        if (v.state == "I" && v.queued == 0) continue;
        dirs += " " + id + ".dir=" + v.state;
        if (!v.owner.empty()) dirs += " owner=" + v.owner;
        if (!v.sharers.empty()) {
          dirs += " sharers=";
          for (size_t i = 0; i < v.sharers.size(); ++i) dirs += (i ? "," : "") + v.sharers[i];
        }
        if (v.queued) dirs += " queued=" + std::to_string(v.queued);
      }
      l += " |" + (dirs.empty() ? std::string(" -") : dirs);
      l += " mem=" + val(cl_->memory_value(k));
      out += l + "\n";
    }
    return out;
  }

  void collect(script_result& res) {
    if (!cl_) return;
    for (auto& [id, n] : cl_->nodes()) collect_node(res, n);
    cl_.reset();
  }

  static void collect_node(script_result& res, cluster::node& n) {
    {
      for (size_t s = 0; s < cache_state_count; ++s)
        for (size_t e = 0; e < cache_event_count; ++e)
          if (auto k = n.ctl->transitions(static_cast<cache_state>(s), static_cast<cache_event>(e)))
            res.cache_transitions[{std::string(to_string(static_cast<cache_state>(s))),
                                   std::string(to_string(static_cast<cache_event>(e)))}] += k;
      for (size_t r = 0; r < dir_row_count; ++r)
        for (size_t e = 0; e < dir_event_count; ++e)
          if (auto k = n.dir->transitions(static_cast<dir_row>(r), static_cast<dir_event>(e)))
            res.dir_transitions[{std::string(to_string(static_cast<dir_row>(r))),
                                 std::string(to_string(static_cast<dir_event>(e)))}] += k;
    }
  }

  std::unique_ptr<cluster> cl_;
  std::set<std::string> keys_;
  uint64_t next_request_ = 0;
  std::vector<std::string> log_;
  std::map<std::string, uint64_t> reported_unexpected_;
};

}  // namespace dsync::cache::testing

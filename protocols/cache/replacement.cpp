#include "protocols/cache/replacement.hpp"

namespace dsync::cache {

void replacer::insert(const std::string& key) {
  erase(key);
  rank_[key] = {1, ++clock_};
  order_.emplace(kind_ == replacement_kind::lfu ? 1 : 0, clock_, key);
}

void replacer::touch(const std::string& key, uint64_t times) {
  auto it = rank_.find(key);
  if (it == rank_.end() || times == 0) return;
  auto& [uses, last] = it->second;
  order_.erase(entry{kind_ == replacement_kind::lfu ? uses : 0, last, key});
  uses += times;
  last = ++clock_;
  order_.emplace(kind_ == replacement_kind::lfu ? uses : 0, last, key);
}

void replacer::erase(const std::string& key) {
  auto it = rank_.find(key);
  if (it == rank_.end()) return;
  order_.erase(entry{kind_ == replacement_kind::lfu ? it->second.first : 0, it->second.second, key});
  rank_.erase(it);
}

void replacer::clear() {
  order_.clear();
  rank_.clear();
}

uint64_t replacer::uses(const std::string& key) const {
  auto it = rank_.find(key);
  return it == rank_.end() ? 0 : it->second.first;
}

}  // namespace dsync::cache

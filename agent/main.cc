#include <cstdio>

int main() {
  std::puts("edgeferry (skeleton)");
  return 0;
}

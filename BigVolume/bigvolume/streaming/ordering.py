"""The ordering policy: which outstanding chunk is read next, for every view and every source at once.

See README.md beside this file. Planners say what a view needs (a tier, the
level, and each chunk's distance from the view's centre); this module alone
turns that into an order. A priority is a tuple compared in order:

    (tier, -level, rank)

- tier: NOW (what a view with nothing to show needs for its first frame),
  VISIBLE, PREFETCH (ahead of the motion; the coarsest level of a source),
  BACKGROUND (work no view waits for, e.g. a 3D refinement).
- -level: coarse before fine, so a view is filled quickly and refined after.
- rank: the chunk's place in its own requester's list, nearest the centre
  first. Ranks rather than distances make requesters fair: two views (or an
  image and its labels in one view) at the same tier and level take turns,
  whatever their voxel sizes.

`RequestQueue` keeps each requester's wants as one list sorted by priority
and merges the lists lazily (a k-way merge over a heap of requesters): a
requester that moves replaces its list in O(1) once `priorities` has sorted
it, taking the best chunk costs O(log requesters), and what a requester no
longer wants is gone with its old list. A chunk several requesters want is
met at the best of their priorities first; the engine skips the later
meetings (the chunk is then in flight or cached).
"""

import heapq
import itertools
from operator import itemgetter

NOW, VISIBLE, PREFETCH, BACKGROUND = 0, 1, 2, 3


def priorities(needs):
    """[(priority, key), ...] best first, each key once at its best, from needs [(tier, level, distance, key)]."""
    ranked, seen = [], set()
    rank, group = 0, None
    # Sorted by tier, coarse level first, distance: each need's rank is its place within its (tier, level).
    for tier, level, distance, key in sorted(needs, key=lambda need: (need[0], -need[1], need[2])):
        if (tier, level) != group:
            rank, group = 0, (tier, level)
        if key not in seen:  # sorted best first: a key's first need is its best
            seen.add(key)
            ranked.append(((tier, -level, rank), key))
        rank += 1
    return ranked


class _Wants:
    __slots__ = ("ranked", "cursor", "version")

    def __init__(self, ranked, version):
        self.ranked, self.cursor, self.version = ranked, 0, version


class RequestQueue:
    """Outstanding chunk requests of every requester, best priority first."""

    def __init__(self):
        self._wants = {}  # requester -> _Wants
        self._heads = []  # (priority of a requester's next want, sequence, requester, version); stale when replaced
        self._sequence = itertools.count()
        self._versions = itertools.count()
        self._count = 0  # wants not yet popped, over all requesters

    def __len__(self):
        return self._count

    def __contains__(self, key):
        return any(key in map(itemgetter(1), w.ranked[w.cursor:]) for w in self._wants.values())

    def wants(self, requester):
        """{key: priority} a requester still waits for (not yet popped)."""
        w = self._wants.get(requester)
        return {} if w is None else {key: priority for priority, key in w.ranked[w.cursor:]}

    def requesters(self):
        return list(self._wants)

    def replace(self, requester, ranked):
        """What `requester` wants now, as `priorities` returns it; what it no longer wants is forgotten."""
        old = self._wants.pop(requester, None)
        if old is not None:
            self._count -= len(old.ranked) - old.cursor
        if ranked:
            w = self._wants[requester] = _Wants(list(ranked), next(self._versions))
            self._count += len(w.ranked)
            heapq.heappush(self._heads, (w.ranked[0][0], next(self._sequence), requester, w.version))
        if len(self._heads) > 4 * len(self._wants) + 64:  # stale heads of replaced lists: rebuild
            self._heads = [(w.ranked[w.cursor][0], next(self._sequence), r, w.version) for r, w in self._wants.items()]
            heapq.heapify(self._heads)

    def withdraw(self, requester):
        self.replace(requester, [])

    def _top(self):
        """The live head (its entry stays on the heap), dropping stale ones; None when nothing is outstanding."""
        while self._heads:
            head = self._heads[0]
            w = self._wants.get(head[2])
            if w is not None and w.version == head[3]:
                return head, w
            heapq.heappop(self._heads)
        return None, None

    def peek_priority(self):
        head, _ = self._top()
        return None if head is None else head[0]

    def pop(self):
        """The best outstanding key (requesters at equal priorities take turns); None when nothing is outstanding."""
        head, w = self._top()
        if head is None:
            return None
        heapq.heappop(self._heads)
        key = w.ranked[w.cursor][1]
        w.cursor += 1
        self._count -= 1
        if w.cursor < len(w.ranked):
            heapq.heappush(self._heads, (w.ranked[w.cursor][0], next(self._sequence), head[2], w.version))
        else:
            del self._wants[head[2]]
        return key

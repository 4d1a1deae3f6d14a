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

`RequestQueue` merges the requesters' wants (a chunk wanted by several gets
the best of their priorities) in a heap with lazy deletion: replacing a
requester's wants costs O(changed chunks x log n), taking the best chunk
O(log n), so tens of thousands of outstanding chunks stay cheap.
"""

import heapq
import itertools

NOW, VISIBLE, PREFETCH, BACKGROUND = 0, 1, 2, 3


def priorities(needs):
    """{key: priority} from a requester's needs [(tier, level, distance, key), ...] (the best need of a key wins)."""
    by_group = {}
    for tier, level, distance, key in needs:
        by_group.setdefault((tier, level), []).append((distance, key))
    out = {}
    for (tier, level), group in by_group.items():
        group.sort(key=lambda item: item[0])
        for rank, (_, key) in enumerate(group):
            priority = (tier, -level, rank)
            if key not in out or priority < out[key]:
                out[key] = priority
    return out


class RequestQueue:
    """Outstanding chunk requests of every requester, best priority first."""

    def __init__(self):
        self._wants = {}  # requester -> {key: priority}
        self._claims = {}  # key -> {requester: priority}
        self._best = {}  # key -> best priority over its claims
        self._heap = []  # (priority, sequence, key); entries whose priority is no longer the key's best are stale
        self._sequence = itertools.count()

    def __len__(self):
        return len(self._best)

    def __contains__(self, key):
        return key in self._best

    def wants(self, requester):
        """{key: priority} still outstanding for a requester."""
        return dict(self._wants.get(requester, {}))

    def requesters(self):
        return list(self._wants)

    def replace(self, requester, wanted):
        """What `requester` wants now ({key: priority}); what it no longer wants leaves the queue unless another
        requester wants it too."""
        old = self._wants.get(requester, {})
        for key in old.keys() - wanted.keys():
            self._unclaim(key, requester)
        for key, priority in wanted.items():
            if old.get(key) != priority:
                self._claims.setdefault(key, {})[requester] = priority
                self._update_best(key)
        if wanted:
            self._wants[requester] = dict(wanted)
        else:
            self._wants.pop(requester, None)
        self._compact()

    def withdraw(self, requester):
        self.replace(requester, {})

    def pop(self):
        """The best outstanding key, removed from every requester's wants; None when nothing is outstanding."""
        while self._heap:
            priority, _, key = heapq.heappop(self._heap)
            if self._best.get(key) == priority:
                self.discard(key)
                return key
        return None

    def peek_priority(self):
        """The best outstanding priority, or None (stale heap entries are dropped on the way)."""
        while self._heap:
            priority, _, key = self._heap[0]
            if self._best.get(key) == priority:
                return priority
            heapq.heappop(self._heap)
        return None

    def discard(self, key):
        """A key that needs no reading any more (it arrived, or failed): it leaves every requester's wants."""
        for requester in self._claims.pop(key, {}):
            wants = self._wants.get(requester)
            if wants is not None:
                wants.pop(key, None)
                if not wants:
                    del self._wants[requester]
        self._best.pop(key, None)

    def _unclaim(self, key, requester):
        claims = self._claims.get(key)
        if claims is None:
            return
        claims.pop(requester, None)
        if not claims:
            del self._claims[key]
            self._best.pop(key, None)
        else:
            self._update_best(key)

    def _update_best(self, key):
        best = min(self._claims[key].values())
        if self._best.get(key) != best:
            self._best[key] = best
            heapq.heappush(self._heap, (best, next(self._sequence), key))

    def _compact(self):
        """Rebuild the heap when stale entries outnumber live ones (keeps memory and pops bounded)."""
        if len(self._heap) > 4 * len(self._best) + 1024:
            self._heap = [(priority, next(self._sequence), key) for key, priority in self._best.items()]
            heapq.heapify(self._heap)

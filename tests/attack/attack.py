#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The attacker of smplaserd: a model-based randomized test of the real daemon
process, judged by the truth outside it (tests/attack/README.md).

  attack.py check [--seconds N] [--seed N]
        "make check": every seed (a directed program per known class of hole),
        then N s (default 45) of random episodes with the features whose holes
        are closed (tests/attack/open-holes lists those still open: their seeds
        are reported "ok ... # TODO" while they fail, "not ok" once they pass).
  attack.py seed NAME... | attack.py seeds
        run seeds; each "ok"/"not ok" with what it found.
  attack.py random [--seconds N] [--seed N] [--episode S] [--features a,b]
        random episodes, stopping at the first violation ("make attack").
  attack.py hunt [--seconds N] [--seed N]
        random episodes with every feature, going on after each violation, and
        the time from the cold start to the first violation of each class.
  attack.py replay --seed N --episode-seed M
        one random episode again (the same program; the daemon's timing may differ).

Every run prints its seeds; Debian's /usr/bin/python3 (python3-dbus).
"""
import argparse
import os
import random
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attacker import Episode  # noqa: E402
from world import Found  # noqa: E402
import driver  # noqa: E402

OPEN_HOLES = os.path.join(HERE, 'open-holes')


def open_holes():
    holes = set()
    try:
        with open(OPEN_HOLES) as f:
            for line in f:
                line = line.split('#', 1)[0].strip()
                if line:
                    holes.add(int(line))
    except OSError:
        pass
    return holes


def episode_config(rng, features, ignore):
    cfg = driver.random_config(rng, features)
    cfg['ignore'] = set(ignore)
    return cfg


def one_line(text):
    return ' | '.join(str(text).splitlines())


class Runner:
    def __init__(self, verbose=False, keep_going=False):
        self.verbose = verbose
        self.keep_going = keep_going
        self.t0 = time.monotonic()
        self.first = {}          # class -> (seconds from the cold start, violation)
        self.stop_when = None
        self.sign = None         # (seconds, violation) of the first violation stop_when took

    def report(self, v):
        t = time.monotonic() - self.t0
        if self.sign is None and getattr(v, 'hit', False):
            self.sign = (t, v)
        if v.cls not in self.first:
            self.first[v.cls] = (t, v)
            print('# FOUND %s at %.1f s (episode %s +%.1f s): %s' % (
                v.cls, t, v.episode, v.t, one_line(v.detail)[:300]))
        elif self.verbose:
            print('#   again %s: %s' % (v.cls, one_line(v.detail)[:200]))
        sys.stdout.flush()

    def log(self, what):
        if self.verbose:
            print('#   . %s' % what)

    def run_episode(self, name, fn, cfg, rng, *args):
        """Returns (violations, episode, error text or None)."""
        ep = Episode(rng, cfg, report=self.report, keep_going=self.keep_going,
                     log=self.log, name=name)
        ep.stop_when = self.stop_when
        err = None
        try:
            fn(ep, rng, *args)
        except Found:
            pass
        except Exception:
            err = traceback.format_exc()
        finally:
            if ep.violations or err:
                keep(ep, err)
            ep.close()
        return ep.violations, ep, err


KEEP_DIR = os.path.join(HERE, '..', '..', 'build', 'attack')


def keep(ep, err):
    """The whole program, the violations and the daemon's log of an episode that found
    something: build/attack/<episode>.txt."""
    try:
        os.makedirs(KEEP_DIR, exist_ok=True)
        path = os.path.join(KEEP_DIR, '%s.txt' % ep.name)
        with open(path, 'w') as f:
            f.write('config: %r\n\n' % (ep.cfg,))
            for v in ep.violations:
                f.write('VIOLATION %s at %.1f s: %s\n' % (v.cls, v.t, v.detail))
            if err:
                f.write(err)
            f.write('\nsteps:\n' + '\n'.join(ep.steps) + '\n\ndaemon log:\n')
            f.write(ep.world.log())
        print('# kept: %s' % os.path.relpath(path))
    except OSError:
        pass


def dump(ep, err=None, lines=25):
    print('# steps (last %d of %d):' % (min(lines, len(ep.steps)), len(ep.steps)))
    for s in ep.steps[-lines:]:
        print('#   ' + s)
    if err:
        for line in err.splitlines()[-12:]:
            print('# ' + line)
    log = ep.world.log().splitlines()
    for line in log[-12:]:
        print('# log: ' + line[:200])


def ignored_classes(open_set, own=()):
    """The violation classes of the holes in @open_set but @own."""
    out = set()
    for h in open_set:
        if h not in own:
            out |= driver.HOLE_CLASSES.get(h, set())
    return out


def run_seed(runner, name, seed, todo_holes=None):
    fn, cfg, holes = driver.SEEDS[name]
    cfg = dict(cfg)
    cfg.setdefault('liveness', False)
    if todo_holes:
        cfg['ignore'] = ignored_classes(todo_holes, holes)
    rng = random.Random(seed)
    return runner.run_episode(name, fn, cfg, rng) + (holes,)


def cmd_seeds(names, seed, todo_holes=None, tap_start=1):
    """TAP lines for each seed; returns the number of failures."""
    failed = 0
    runner = Runner(keep_going=True)
    n = tap_start
    for name in names:
        start = time.monotonic()
        violations, ep, err, holes = run_seed(runner, name, seed, todo_holes)
        took = time.monotonic() - start
        classes = sorted({v.cls for v in violations})
        known_open = todo_holes is not None and set(holes) & todo_holes
        if err:
            print('not ok %d - seed %s: the attacker failed' % (n, name))
            dump(ep, err)
            failed += 1
        elif violations and known_open:
            print('ok %d - seed %s (hole %s still open): found %s in %.1f s # TODO' % (
                n, name, ','.join(map(str, holes)), ', '.join(classes), took))
        elif violations:
            print('not ok %d - seed %s (hole %s): %s' % (n, name, ','.join(map(str, holes)),
                                                        ', '.join(classes)))
            for v in violations[:8]:
                print('# %s' % one_line(v))
            dump(ep)
            failed += 1
        elif known_open:
            print('not ok %d - seed %s: hole %s is listed in tests/attack/open-holes but '
                  'the seed finds nothing (%.1f s): remove it from the list' % (
                      n, name, ','.join(map(str, holes)), took))
            failed += 1
        else:
            print('ok %d - seed %s (hole %s): nothing found in %.1f s, %d steps, %d arms' % (
                n, name, ','.join(map(str, holes)), took, ep.stats['steps'],
                ep.stats['arms_ok']))
        sys.stdout.flush()
        n += 1
    return failed


def random_episodes(runner, seconds, seed, features, ignore, episode_s, stop_first):
    """Random episodes for @seconds; returns (violations, episodes run)."""
    master = random.Random(seed)
    end = time.monotonic() + seconds
    found, episodes = [], 0
    while time.monotonic() < end - 5:
        ep_seed = master.randrange(2 ** 31)
        rng = random.Random(ep_seed)
        cfg = episode_config(rng, features, ignore)
        length = min(episode_s, max(5, end - time.monotonic() - 8))
        name = 'r%d' % ep_seed
        print('# episode %s: %d units, %s bus, test spot %s, %s, features %s, %.0f s' % (
            name, cfg['units'], cfg.get('bus', 'session'), cfg.get('test_spot', 0) or 'off',
            'calm' if cfg.get('calm') else 'busy', ','.join(sorted(cfg['features'])), length))
        sys.stdout.flush()
        violations, ep, err = runner.run_episode(name, driver.run_random, cfg, rng, length,
                                                 cfg['features'])
        episodes += 1
        print('# episode %s: %d steps, %d calls, %d arms, %d pulses, %d restarts, %d found' % (
            name, ep.stats['steps'], ep.stats['calls'], ep.stats['arms_ok'],
            sum(ep.truth.count(s) for s in ep.serials), ep.stats['restarts'],
            len(violations)))
        if err:
            print('# the attacker failed in episode %s (seed %d):' % (name, ep_seed))
            dump(ep, err)
            found.append(('attacker-error', name, err.splitlines()[-1]))
            if stop_first:
                break
        if violations:
            found += [(v.cls, name, v.detail) for v in violations]
            if stop_first:
                print('# replay: tests/attack/attack.py replay --episode-seed %d --features %s'
                      % (ep_seed, ','.join(sorted(cfg['features']))))
                dump(ep)
                break
    return found, episodes


def main():
    # killed (timeout, ^C): the episode's finally still stops its daemon and bus
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['check', 'seed', 'seeds', 'random', 'hunt', 'replay'])
    ap.add_argument('names', nargs='*')
    ap.add_argument('--seconds', type=float, default=None)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--episode', type=float, default=40)
    ap.add_argument('--episode-seed', type=int, default=None)
    ap.add_argument('--features', default=None)
    ap.add_argument('--verbose', action='store_true')
    ap.add_argument('--hole', type=int, default=None,
                    help='hunt: as if only this hole were open (the features of the '
                    'others left out, their classes ignored); stop at the first find')
    ap.add_argument('--open-only', action='store_true',
                    help='hunt --hole: keep only the holes listed open out of the way '
                    '(default: every hole of driver.HOLE_FEATURES, for a daemon before fixes)')
    ap.add_argument('--all', action='store_true',
                    help='random/replay: also what the holes listed open would trigger')
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(os.environ.get('ATTACK_SEED',
                                                                time.time() * 1000) % 2 ** 31)
    holes = open_holes()

    if a.mode in ('seed', 'seeds'):
        names = a.names or list(driver.SEEDS)
        print('1..%d' % len(names))
        print('# seed %d' % seed)
        return 1 if cmd_seeds(names, seed) else 0

    if a.mode == 'check':
        seconds = a.seconds if a.seconds is not None else float(
            os.environ.get('ATTACK_CHECK_SECONDS', 45))
        names = list(driver.SEEDS)
        print('1..%d' % (len(names) + 1))
        off = set()
        for h in holes:
            off |= driver.HOLE_FEATURES.get(h, set())
        features = [f for f in driver.FEATURES if f not in off]
        print('# seed %d (ATTACK_SEED=%d replays it); holes still open: %s' % (
            seed, seed, ','.join(map(str, sorted(holes))) or 'none'))
        print('# random part leaves out: %s' % (','.join(sorted(off)) or 'nothing'))
        sys.stdout.flush()
        failed = cmd_seeds(names, seed, todo_holes=holes)
        runner = Runner(keep_going=False)
        start = time.monotonic()
        found, episodes = random_episodes(runner, seconds, seed, features,
                                          ignored_classes(holes), a.episode, True)
        n = len(names) + 1
        if found:
            print('not ok %d - random episodes (seed %d): %s' % (n, seed, found[0][0]))
            for cls, name, detail in found[:8]:
                print('# %s in %s: %s' % (cls, name, one_line(detail)[:300]))
            failed += 1
        else:
            print('ok %d - random episodes (seed %d): %d episodes in %.0f s, nothing found' % (
                n, seed, episodes, time.monotonic() - start))
        return 1 if failed else 0

    features = a.features.split(',') if a.features else list(driver.FEATURES)
    ignore = set()
    if a.mode in ('random', 'replay') and not a.all:
        ignore = ignored_classes(holes)
        for h in holes:
            features = [f for f in features if f not in driver.HOLE_FEATURES.get(h, ())]
    seconds = a.seconds if a.seconds is not None else float(os.environ.get('ATTACK_SECONDS',
                                                                          600))
    if a.mode == 'replay':
        rng = random.Random(a.episode_seed)
        cfg = episode_config(rng, features, ignore)
        runner = Runner(verbose=a.verbose, keep_going=True)
        violations, ep, err = runner.run_episode('r%d' % a.episode_seed, driver.run_random,
                                                 cfg, rng, a.episode, cfg['features'])
        dump(ep, err, 60)
        return 1 if violations or err else 0

    print('# seed %d, %.0f s, features %s' % (seed, seconds, ','.join(features)))
    if a.mode == 'random':
        print('1..1')
        runner = Runner(verbose=a.verbose, keep_going=False)
        found, episodes = random_episodes(runner, seconds, seed, features, ignore, a.episode,
                                          True)
        if found:
            print('not ok 1 - random episodes (seed %d): %s' % (seed, found[0][0]))
            return 1
        print('ok 1 - random episodes (seed %d): %d episodes, nothing found' % (seed, episodes))
        return 0

    if a.hole is not None:
        # the time to find one hole from a cold start, the others kept out of the way
        others = (holes if a.open_only else set(driver.HOLE_FEATURES)) - {a.hole}
        keep = driver.HOLE_FEATURES.get(a.hole, set())
        features = [f for f in features
                    if f in keep or not any(f in driver.HOLE_FEATURES[h] for h in others)]
        ignore = ignored_classes(others)
        print('# hunting hole %d: features %s; ignoring %s' % (
            a.hole, ','.join(features), ','.join(sorted(ignore))))
        runner = Runner(verbose=a.verbose, keep_going=True)
        runner.stop_when = lambda v, ep: driver.hole_sign(a.hole, v, ep)
        end = time.monotonic() + seconds
        master = random.Random(seed)
        episodes = 0
        while runner.sign is None and time.monotonic() < end - 5:
            ep_seed = master.randrange(2 ** 31)
            rng = random.Random(ep_seed)
            cfg = episode_config(rng, features, ignore)
            length = min(a.episode, max(5, end - time.monotonic() - 8))
            print('# episode r%d: %d units, test spot %s, features %s' % (
                ep_seed, cfg['units'], cfg.get('test_spot', 0) or 'off',
                ','.join(sorted(cfg['features']))))
            sys.stdout.flush()
            runner.run_episode('r%d' % ep_seed, driver.run_random, cfg, rng, length,
                               cfg['features'])
            episodes += 1
        took = time.monotonic() - runner.t0
        if runner.sign:
            t, v = runner.sign
            print('# hole %d: %s found after %.1f s (seed %d, %d episodes): %s' % (
                a.hole, v.cls, t, seed, episodes, one_line(v.detail)[:300]))
            return 0
        print('# hole %d: not found in %.0f s (seed %d, %d episodes)' % (a.hole, took, seed,
                                                                          episodes))
        return 1

    # hunt: every feature, keep going, the time to the first find of each class
    runner = Runner(verbose=a.verbose, keep_going=True)
    found, episodes = random_episodes(runner, seconds, seed, features, set(), a.episode, False)
    print('# hunt seed %d: %d episodes in %.0f s' % (seed, episodes,
                                                      time.monotonic() - runner.t0))
    for cls, (t, v) in sorted(runner.first.items(), key=lambda x: x[1][0]):
        print('# first %-20s %7.1f s  %s' % (cls, t, one_line(v.detail)[:150]))
    return 0


if __name__ == '__main__':
    sys.exit(main())

/* tests/models/queue_bias.pml - conc/queue.h's bias: an owner's plain-store claims against a
 * revoker and against a sleeper of the other side
 * SPDX-License-Identifier: MIT
 *
 * What is modelled: the producers' side (the consumers' is the same code). The owner claims
 * with plain stores, which go through a store buffer, as on x86 (TSO): its stores of the end
 * and of busy wait in a FIFO that a flusher drains one store at a time whenever it likes, the
 * owner's own loads see its newest buffered value (store forwarding), and every other load
 * reads memory. A locked RMW (any CAS, the waiter's registration) drains its thread's buffer
 * first; only the owner has one here (the others' stores are RMWs or harmless to delay).
 * membarrier(2), the heavy barrier, drains the owner's buffer in one step: the owner runs a
 * full barrier at some point during the call, and under TSO that is exactly a drain.
 *
 * Processes: the owner, which takes the bias (it starts UNOWNED) and makes two claims, each
 * with the window of the header, or a CAS once the bias is revoked; a second producer that
 * may claim once (revoking the bias first) or never; a consumer that wants two items (the
 * owner's, so that the last claim's wake is the one it needs) and sleeps on the eventcount
 * when the ring looks empty (the word reduced to waiters and a sequence; queue.pml checks
 * the rest of it): before its re-check it issues the heavy
 * barrier while the bias is held, or revokes the bias instead (the debt rule: either may
 * happen); or it holds a ticket (4,095 waiters registered before it), registers later, and
 * fences then. The notifier's side of that pair: after each claim the claimer reads the word.
 * A revocation under way is finished by any revoker that finds it (the second producer's or
 * the consumer's), with a barrier of its own.
 *
 * Left out: other memory models than TSO (on ARM the heavy barrier's argument is the same,
 * base.h), the consumers' side (the same code), stamps and close (close revokes first, as
 * the second producer does), two sleepers and pending wakes (queue.pml), the debt's
 * arithmetic, thread tokens, fork and signal handlers (tests/test_queue.c).
 *
 * Checked: no position is claimed twice (an owner's store never meets a CAS); the end,
 * once every buffer is drained, equals the number of claims (no claim overwritten); the
 * consumer never stays asleep while an item was claimed (an invalid end state).
 *
 * Broken variants (each must produce errors):
// broken: BROKEN_NO_RECHECK        the owner does not look at the bias again after busy = 1
// broken: BROKEN_NO_HEAVY_BARRIER  the revoker waits for busy without the heavy barrier
// broken: BROKEN_HELPER_UNFENCED   a claimer that finishes another's revocation skips the barrier
// broken: BROKEN_NO_BUSY_WAIT      the revoker sets REVOKED without waiting for busy == 0
// broken: BROKEN_NO_SLEEPER_FENCE  the sleeper re-checks without the heavy barrier
// broken: BROKEN_TICKET_UNFENCED   a waiter registered late (after a ticket) skips the fence
// broken: BROKEN_NO_LIGHT_BARRIER  the owner's notify reads the word before storing the end
 */

#define UNOWNED 0
#define OWNER 1
#define REVOKING 2
#define REVOKED 3

#define V_END 0
#define V_BUSY 1
#define WANT 2 /* the items the consumer waits for */
#define SB 8 /* two claims of three stores, and one window given up */

byte mem[2];         /* the end (tail) and busy, in memory */
byte sbx[SB];        /* the owner's store buffer: variable, value; oldest first */
byte sbv[SB];
byte sbn = 0;
byte bias = UNOWNED; /* written by RMWs and the revoker only: never buffered */
byte claimed[4];     /* per position, claims made */
byte claims = 0;
byte waiters = 0;    /* the consumer's eventcount word */
byte seq = 0;
bool asleep = false;
byte finished = 0;

inline drain() {
    do
    :: sbn > 0 ->
        mem[sbx[0]] = sbv[0];
        k = 1;
        do
        :: k < sbn -> sbx[k - 1] = sbx[k]; sbv[k - 1] = sbv[k]; k++
        :: else -> break
        od;
        sbn--
    :: else -> break
    od
}

/* The owner's plain store and load (forwarded from its newest buffered store). */
inline ostore(x, v) {
    atomic { assert(sbn < SB); sbx[sbn] = x; sbv[sbn] = v; sbn++ }
}
inline oload(x, r) {
    atomic {
        r = mem[x];
        k = 0;
        do
        :: k < sbn -> if :: sbx[k] == x -> r = sbv[k] :: else -> skip fi; k++
        :: else -> break
        od
    }
}

inline record_claim(e) {
    atomic { assert(e < 4 && claimed[e] == 0); claimed[e]++; claims++ }
}

/* The notifier's load of the word: wakes a registered sleeper, with a CAS on the word (locked:
 * the caller's buffer drains; own: the owner's) and futex_wake. */
inline notify(own) {
    atomic {
        if
        :: waiters > 0 ->
            if :: own -> drain() :: else -> skip fi;
            seq++; asleep = false
        :: else -> skip
        fi
    }
}

/* A CAS claim: locked, so the caller's buffer drains first (own: the owner's). */
inline cas_claim(own) {
    atomic {
        if :: own -> drain() :: else -> skip fi;
        e = mem[V_END]; record_claim(e); mem[V_END] = e + 1
    };
    notify(own)
}

/* Until the bias is revoked (conc__queue_bias_drop_slow): UNOWNED goes straight to REVOKED; an
 * owner's bias is revoked: CAS owner -> REVOKING, heavy barrier, wait for busy 0, REVOKED;
 * a revocation under way is finished by whoever finds it (conc__queue_bias_finish_slow: the
 * same barrier, wait and CAS REVOKING -> REVOKED), so no revoker holds the side up. */
inline revoke() {
    atomic {
        if
        :: bias == OWNER -> bias = REVOKING; mine = true; helping = false
        :: bias == UNOWNED -> bias = REVOKED; mine = false
        :: bias == REVOKING -> mine = true; helping = true
        :: else -> mine = false
        fi
    };
    if
    :: mine ->
#ifndef BROKEN_NO_HEAVY_BARRIER
#ifdef BROKEN_HELPER_UNFENCED
        if :: !helping -> atomic { drain() } :: else -> skip fi;
#else
        atomic { drain() };
#endif
#endif
#ifndef BROKEN_NO_BUSY_WAIT
        (mem[V_BUSY] == 0);
#endif
        atomic { if :: bias == REVOKING -> bias = REVOKED :: else -> skip fi }
    :: else -> skip
    fi;
    (bias == REVOKED)
}

active proctype flusher() {
    byte k;
end:
    do
    :: atomic {
           sbn > 0 ->
           mem[sbx[0]] = sbv[0];
           k = 1;
           do
           :: k < sbn -> sbx[k - 1] = sbx[k]; sbv[k - 1] = sbv[k]; k++
           :: else -> break
           od;
           sbn--
       }
    od
}

active proctype owner() {
    byte k, e, b, n = 0;
    /* The first claim takes the bias: a seq_cst CAS, locked ([queue.B5]). */
    atomic { drain(); if :: bias == UNOWNED -> bias = OWNER :: else -> skip fi };
    do
    :: n == 2 -> break
    :: n < 2 ->
        if
        :: bias == OWNER ->
            ostore(V_BUSY, 1);                          /* [queue.B1], light barrier */
#ifndef BROKEN_NO_RECHECK
            if
            :: bias != OWNER -> ostore(V_BUSY, 0); goto again
            :: else -> skip
            fi;
#endif
            oload(V_END, e);
#ifdef BROKEN_NO_LIGHT_BARRIER
            notify(true); /* the word read first */
#endif
            atomic { record_claim(e); ostore(V_END, e + 1) };
            ostore(V_BUSY, 0);                          /* [queue.B3], light barrier */
#ifndef BROKEN_NO_LIGHT_BARRIER
            notify(true);
#endif
            n++
        :: bias == REVOKED -> cas_claim(true); n++
        :: bias == REVOKING -> (bias == REVOKED)
        fi;
again:  skip
    od;
    atomic { finished++ }
}

active proctype producer2() {
    byte k, e;
    bool mine, helping;
    if
    :: true ->
        revoke();
        cas_claim(false)
    :: true -> skip /* never claims */
    fi;
    atomic { finished++ }
}

/* [queue.B4]: while the bias is held, the heavy barrier, or revoke it (the debt rule). */
inline sleeper_fence() {
    if
    :: bias == OWNER || bias == REVOKING ->
        if
#ifndef BROKEN_NO_SLEEPER_FENCE
        :: true -> atomic { drain() }
#else
        :: true -> skip
#endif
        :: true -> revoke()
        fi
    :: else -> skip
    fi
}

active proctype consumer() {
    byte k, myseq;
    bool mine, helping;
    /* a try: the end moved past WANT means the items are, or soon are, ours to take */
    if
    :: mem[V_END] >= WANT -> goto got
    :: else -> skip
    fi;
    if
    :: atomic { waiters++; myseq = seq };      /* [eventcount.W1] */
        sleeper_fence()
    :: true ->
        /* A ticket (4,095 waiters registered already): registered nobody; its fence finds
         * nothing to order. It re-checks, polls off the futex, and registers later, inside
         * the eventcount's wait: the fence must follow that registration too. */
        sleeper_fence();
        if
        :: mem[V_END] >= WANT -> goto got
        :: else -> skip
        fi;
        atomic { waiters++; myseq = seq };
#ifndef BROKEN_TICKET_UNFENCED
        sleeper_fence()
#endif
    fi;
recheck:
    if
    :: mem[V_END] >= WANT -> atomic { waiters-- }; goto got
    :: else -> skip
    fi;
    atomic {
        if
        :: seq == myseq -> asleep = true
        :: else -> skip
        fi
    };
    (!asleep);
    myseq = seq;
    goto recheck;
got:
    atomic { finished++ }
}

/* Every claim landed: with all done and the buffer drained, the end counts them. */
active proctype checker() {
    atomic { finished == 3 && sbn == 0 -> assert(mem[V_END] == claims) }
}

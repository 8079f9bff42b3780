#!/usr/bin/perl
# tests/testhost/qemu-hflags.pl PID R8 R9 R10 R11 R12 R13 R14 R15 (hex, from `info registers`
# of a stopped L1): finds the x86 CPU state of the QEMU process PID in its memory by those
# registers and prints its hidden flags, above all SVM's global interrupt flag (GIF), which
# `info registers` does not show. Used by l1_monitor_dump (lib.sh) on a stalled L1.
#
# Layout (QEMU's target/i386/cpu.h, CPUArchState, stable for years): regs[16], eip, eflags,
# cc_dst, cc_src, cc_src2 (8 bytes each), cc_op, df, hflags, hflags2 (4 bytes each): hflags
# at byte 176, hflags2 at 180. HF2 bits: 0 GIF, 1 HIF, 2 NMI_MASK, 3 VINTR; HF bits: 19 SMM,
# 21 GUEST (SVM guest mode). Perl because it is on every Debian system (perl-base).
use strict;
use warnings;
no warnings 'portable';
my ($pid, @r) = @ARGV;
die "usage: $0 PID R8..R15\n" unless defined $pid && @r == 8;
my $pat = join('', map { pack('Q<', hex($_)) } @r);
open(my $maps, '<', "/proc/$pid/maps") or die "maps: $!\n";
open(my $mem, '<:raw', "/proc/$pid/mem") or die "mem: $!\n";
my @hits;
while (my $l = <$maps>) {
    my ($a, $b, $perm) = $l =~ /^([0-9a-f]+)-([0-9a-f]+) (\S+)/ or next;
    next unless $perm =~ /^rw/;
    my ($start, $end) = (hex($a), hex($b));
    next if $end - $start > (1 << 30);    # guest RAM
    for (my $off = $start; $off < $end; $off += (1 << 20)) {
        my $len = $end - $off < (1 << 20) ? $end - $off : (1 << 20);
        defined(sysseek($mem, $off, 0)) or next;
        my $buf;
        my $n = sysread($mem, $buf, $len) or next;
        my $i = -1;
        push @hits, $off + $i while ($i = index($buf, $pat, $i + 1)) >= 0;
    }
}
for my $h (@hits) {
    my $env = $h - 64;                    # R8 is regs[8]
    my $b;
    defined(sysseek($mem, $env + 176, 0)) && sysread($mem, $b, 8) == 8 or next;
    my ($hf, $hf2) = unpack('L<L<', $b);
    printf "env=%#x hflags=%#x hflags2=%#x GIF=%d HIF=%d NMI_MASK=%d VINTR=%d GUEST=%d SMM=%d\n",
        $env, $hf, $hf2, $hf2 & 1, ($hf2 >> 1) & 1, ($hf2 >> 2) & 1, ($hf2 >> 3) & 1,
        ($hf >> 21) & 1, ($hf >> 19) & 1;
}
print "no CPU state with these registers found\n" unless @hits;

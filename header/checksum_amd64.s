#include "textflag.h"

// func sumAVX2(b []byte) uint64
//
// Sums the little-endian 16-bit words of b (len a multiple of 64, at most
// 1 MiB): each 16 bytes are zero-extended into eight 32-bit lanes and
// added into one of four accumulators; at the end the accumulators are
// added together and their 32 lanes widened to 64 bits and summed.
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	SHRQ $6, CX
	JZ   reduce

loop:
	VPMOVZXWD 0(SI), Y4
	VPMOVZXWD 16(SI), Y5
	VPMOVZXWD 32(SI), Y6
	VPMOVZXWD 48(SI), Y7
	VPADDD    Y4, Y0, Y0
	VPADDD    Y5, Y1, Y1
	VPADDD    Y6, Y2, Y2
	VPADDD    Y7, Y3, Y3
	ADDQ      $64, SI
	DECQ      CX
	JNZ       loop

reduce:
	VPADDD       Y1, Y0, Y0
	VPADDD       Y3, Y2, Y2
	VPADDD       Y2, Y0, Y0
	VPMOVZXDQ    X0, Y1
	VEXTRACTI128 $1, Y0, X2
	VPMOVZXDQ    X2, Y2
	VPADDQ       Y2, Y1, Y1
	VEXTRACTI128 $1, Y1, X2
	VPADDQ       X2, X1, X1
	VPSHUFD      $0x4e, X1, X2
	VPADDQ       X2, X1, X1
	VMOVQ        X1, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET

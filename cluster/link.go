package cluster

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Forwarding link wire format.
//
// Handshake (client = the node that dials, server = the forward listener):
//
//	C->S  "LLF1" nonceC[32] nameLen[1] name
//	S->C  nonceS[32] HMAC(key, "S" nonceC nonceS name)
//	C->S  HMAC(key, "C" nonceC nonceS name)
//	S->C  0x01 (accepted)
//
// key is forwardKey(cluster name, cluster key). Both sides prove knowledge of
// the key over fresh nonces from both, so a recorded handshake cannot be
// replayed. The link is not encrypted: payloads travel in clear text.
//
// After the handshake only the client sends, as frames:
//
//	length[4, big endian, = 1 + len(body)] kind[1] body
const (
	kindData       = 1
	kindRouteDelta = 2
	kindSnapBegin  = 3
	kindSnapChunk  = 4
	kindSnapEnd    = 5
	kindLeaving    = 6 // the sender is leaving gracefully (memberlist does not tell)
	kindRequest    = 7 // id uvarint, body: answer with kindResponse on our own link
	kindResponse   = 8 // id uvarint, body: the answer to a kindRequest we sent

	frameHeader      = 5
	nonceLen         = 32
	handshakeTimeout = 5 * time.Second
	dialTimeout      = 5 * time.Second
	writeTimeout     = 10 * time.Second
)

var linkMagic = [4]byte{'L', 'L', 'F', '1'}

var errHandshake = errors.New("cluster: forwarding handshake refused")

func handshakeMAC(key []byte, side byte, nonceC, nonceS []byte, name string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte{side})
	mac.Write(nonceC)
	mac.Write(nonceS)
	mac.Write([]byte(name))
	return mac.Sum(nil)
}

// clientHandshake authenticates an outbound link as node name.
func clientHandshake(conn net.Conn, key []byte, name string) error {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	hello := make([]byte, 0, 4+nonceLen+1+len(name))
	hello = append(hello, linkMagic[:]...)
	nonceC := make([]byte, nonceLen)
	if _, err := rand.Read(nonceC); err != nil {
		return err
	}
	hello = append(hello, nonceC...)
	hello = append(hello, byte(len(name)))
	hello = append(hello, name...)
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("cannot send hello: %w", err)
	}
	resp := make([]byte, nonceLen+sha256.Size)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return fmt.Errorf("cannot read server proof: %w", err)
	}
	nonceS := resp[:nonceLen]
	if !hmac.Equal(resp[nonceLen:], handshakeMAC(key, 'S', nonceC, nonceS, name)) {
		return fmt.Errorf("%w: server proof does not match (different cluster key or name)", errHandshake)
	}
	if _, err := conn.Write(handshakeMAC(key, 'C', nonceC, nonceS, name)); err != nil {
		return fmt.Errorf("cannot send client proof: %w", err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil || ok[0] != 1 {
		return fmt.Errorf("%w: server did not accept", errHandshake)
	}
	return conn.SetDeadline(time.Time{})
}

// serverHandshake authenticates an inbound link and returns the peer's name.
func serverHandshake(conn net.Conn, br *bufio.Reader, key []byte) (string, error) {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return "", err
	}
	hdr := make([]byte, 4+nonceLen+1)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return "", fmt.Errorf("cannot read hello: %w", err)
	}
	if [4]byte(hdr[:4]) != linkMagic {
		return "", fmt.Errorf("%w: bad magic", errHandshake)
	}
	nonceC := hdr[4 : 4+nonceLen]
	nameB := make([]byte, hdr[4+nonceLen])
	if _, err := io.ReadFull(br, nameB); err != nil {
		return "", fmt.Errorf("cannot read hello name: %w", err)
	}
	name := string(nameB)
	if name == "" {
		return "", fmt.Errorf("%w: empty node name", errHandshake)
	}
	nonceS := make([]byte, nonceLen)
	if _, err := rand.Read(nonceS); err != nil {
		return "", err
	}
	resp := append(nonceS[:nonceLen:nonceLen], handshakeMAC(key, 'S', nonceC, nonceS, name)...)
	if _, err := conn.Write(resp); err != nil {
		return "", fmt.Errorf("cannot send server proof: %w", err)
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, proof); err != nil {
		return "", fmt.Errorf("cannot read client proof: %w", err)
	}
	if !hmac.Equal(proof, handshakeMAC(key, 'C', nonceC, nonceS, name)) {
		return "", fmt.Errorf("%w: client proof from %q does not match", errHandshake, name)
	}
	if _, err := conn.Write([]byte{1}); err != nil {
		return "", fmt.Errorf("cannot accept: %w", err)
	}
	return name, conn.SetDeadline(time.Time{})
}

// appendFrame appends one frame to dst.
func appendFrame(dst []byte, kind byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)))
	dst = append(dst, kind)
	return append(dst, body...)
}

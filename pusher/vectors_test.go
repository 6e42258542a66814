package pusher

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// vectorsFromSDK were computed by the official Pusher server SDK for Node (npm
// "pusher" 5.3.4, under Node 20.20) with testdata/vectors.mjs: its authorizeChannel
// and authenticateUser signed these socket ids, channels, channel_data and
// user_data with sdkApp's secret. "frame" is the message pusher-js 8 sends with
// that auth response (see the script). Nothing here was computed by this package.
const vectorsFromSDK = `
{"kind":"channel","socket_id":"1234.1234","channel":"private-foobar","channel_data":"","auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4\",\"channel\":\"private-foobar\"}}"}
{"kind":"channel","socket_id":"123.456","channel":"private-chat.room=1;a@b,c","channel_data":"","auth":"278d425bdf160c739803:93504f8ee6d2d46692bfe523f685684bcdcc8e339ea2eed41838e252859ef5e9","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:93504f8ee6d2d46692bfe523f685684bcdcc8e339ea2eed41838e252859ef5e9\",\"channel\":\"private-chat.room=1;a@b,c\"}}"}
{"kind":"channel","socket_id":"98765.4321","channel":"private-encrypted-secrets","channel_data":"","auth":"278d425bdf160c739803:d853d18959348f9282fb6567134b6d1dae9afa79c7f9bcc866fe22b458d71ed3","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:d853d18959348f9282fb6567134b6d1dae9afa79c7f9bcc866fe22b458d71ed3\",\"channel\":\"private-encrypted-secrets\"}}"}
{"kind":"channel","socket_id":"1234.1234","channel":"presence-foobar","channel_data":"{\"user_id\":\"10\",\"user_info\":{\"name\":\"Mr. Channels\"}}","auth":"278d425bdf160c739803:4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800\",\"channel_data\":\"{\\\"user_id\\\":\\\"10\\\",\\\"user_info\\\":{\\\"name\\\":\\\"Mr. Channels\\\"}}\",\"channel\":\"presence-foobar\"}}"}
{"kind":"channel","socket_id":"1.2","channel":"presence-room","channel_data":"{\"user_id\":42}","auth":"278d425bdf160c739803:cc4204b336eef634a0a515ee808e77b629da90ec8381facc0b85f9eba646d678","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:cc4204b336eef634a0a515ee808e77b629da90ec8381facc0b85f9eba646d678\",\"channel_data\":\"{\\\"user_id\\\":42}\",\"channel\":\"presence-room\"}}"}
{"kind":"channel","socket_id":"5.6","channel":"presence-unicode","channel_data":"{\"user_id\":\"ünï\",\"user_info\":{\"quote\":\"say \\\"hi\\\"\\n\"}}","auth":"278d425bdf160c739803:6f27447cfa63aae4ae01fefdf63638bac962be0fce25f9969e71fba3469bbd5b","frame":"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"278d425bdf160c739803:6f27447cfa63aae4ae01fefdf63638bac962be0fce25f9969e71fba3469bbd5b\",\"channel_data\":\"{\\\"user_id\\\":\\\"ünï\\\",\\\"user_info\\\":{\\\"quote\\\":\\\"say \\\\\\\"hi\\\\\\\"\\\\n\\\"}}\",\"channel\":\"presence-unicode\"}}"}
{"kind":"user","socket_id":"1234.1234","user_data":"{\"id\":\"10\",\"user_info\":{\"name\":\"Mr. Channels\"}}","auth":"278d425bdf160c739803:aaa4ab4b01d77a2114ba482448abfb2de8f75152d692e1524f86b0b2b04ad7c9","frame":"{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"278d425bdf160c739803:aaa4ab4b01d77a2114ba482448abfb2de8f75152d692e1524f86b0b2b04ad7c9\",\"user_data\":\"{\\\"id\\\":\\\"10\\\",\\\"user_info\\\":{\\\"name\\\":\\\"Mr. Channels\\\"}}\"}}"}
{"kind":"user","socket_id":"7.8","user_data":"{\"id\":\"alice@example.com\",\"watchlist\":[\"bob\",\"carol\"]}","auth":"278d425bdf160c739803:cd152a4b88515222adf200e43d08f6ca54d7b3113d61638711282da6fc9aa73c","frame":"{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"278d425bdf160c739803:cd152a4b88515222adf200e43d08f6ca54d7b3113d61638711282da6fc9aa73c\",\"user_data\":\"{\\\"id\\\":\\\"alice@example.com\\\",\\\"watchlist\\\":[\\\"bob\\\",\\\"carol\\\"]}\"}}"}
`

var sdkApp = App{ID: "4242", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}

type sdkVector struct {
	Kind        string `json:"kind"`
	SocketID    string `json:"socket_id"`
	Channel     string `json:"channel"`
	ChannelData string `json:"channel_data"`
	UserData    string `json:"user_data"`
	Auth        string `json:"auth"`
	Frame       string `json:"frame"`
}

func loadSDKVectors(t *testing.T) []sdkVector {
	t.Helper()
	var vs []sdkVector
	sc := bufio.NewScanner(strings.NewReader(vectorsFromSDK))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var v sdkVector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("vector %q: %v", sc.Text(), err)
		}
		vs = append(vs, v)
	}
	if len(vs) < 8 {
		t.Fatalf("only %d vectors", len(vs))
	}
	return vs
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/tollgate-dev/tollgate/policy"
)

// do sends a control API request and decodes a JSON answer into out. A
// refused call comes back as an *APIError, which errors.Is matches against
// the sentinels it stands for (policy.ErrSelfApproval, ErrBadToken, ...).
func (c *Client) do(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tollgate"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s: %v", ErrDaemonNotRunning, c.socket, err)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e APIError
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			return fmt.Errorf("daemon: %s: %s", resp.Status, bytes.TrimSpace(b))
		}
		e.Status = resp.StatusCode
		return &e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// Approvals lists the statements held for approval, oldest first.
func (c *Client) Approvals(ctx context.Context) ([]policy.Hold, error) {
	var hs []policy.Hold
	err := c.do(ctx, http.MethodGet, "/v1/approvals", "", nil, &hs)
	return hs, err
}

// Decide approves or denies a held statement as the approver whose OIDC ID
// token is given.
func (c *Client) Decide(ctx context.Context, id string, approve bool, reason, token string) (DecideResult, error) {
	verb := "deny"
	if approve {
		verb = "approve"
	}
	var res DecideResult
	err := c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/"+verb, token, DecideRequest{Reason: reason}, &res)
	return res, err
}

// Grants lists every grant, newest first, with its state.
func (c *Client) Grants(ctx context.Context) ([]GrantInfo, error) {
	var gs []GrantInfo
	err := c.do(ctx, http.MethodGet, "/v1/grants", "", nil, &gs)
	return gs, err
}

// CreateGrant asks for a grant as the approver whose token is given.
func (c *Client) CreateGrant(ctx context.Context, req GrantRequest, token string) (GrantInfo, error) {
	var g GrantInfo
	err := c.do(ctx, http.MethodPost, "/v1/grants", token, req, &g)
	return g, err
}

// RevokeGrant ends a grant now, as the approver whose token is given.
func (c *Client) RevokeGrant(ctx context.Context, id, reason, token string) (GrantInfo, error) {
	var g GrantInfo
	err := c.do(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/revoke", token, RevokeRequest{Reason: reason}, &g)
	return g, err
}

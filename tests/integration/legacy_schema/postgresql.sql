-- The schema of helpdeskd before migrations (SCHEMA_VERSION 1), as its create_schema made it
-- on postgresql: SQLModel.metadata.create_all at commit 3f63db7. Frozen: tests build
-- 'a database made by the last landed version' from it. Statements end with ';' on its own line.
CREATE TABLE imapfolder (
	account VARCHAR NOT NULL, 
	folder VARCHAR NOT NULL, 
	uidvalidity BIGINT NOT NULL, 
	last_uid BIGINT NOT NULL, 
	resync_until BIGINT NOT NULL, 
	resync_since TIMESTAMP WITH TIME ZONE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (account, folder)
)
;
CREATE TABLE imaplease (
	account VARCHAR NOT NULL, 
	folder VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (account, folder)
)
;
CREATE TABLE imaptaken (
	account VARCHAR NOT NULL, 
	folder VARCHAR NOT NULL, 
	uidvalidity BIGINT NOT NULL, 
	uid BIGINT NOT NULL, 
	sha256 VARCHAR NOT NULL, 
	message_id VARCHAR NOT NULL, 
	spool_base VARCHAR NOT NULL, 
	taken_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	acked BOOLEAN NOT NULL, 
	PRIMARY KEY (account, folder, uidvalidity, uid)
)
;
CREATE INDEX ix_imaptaken_acked ON imaptaken (account, folder, uidvalidity, acked)
;
CREATE INDEX ix_imaptaken_sha ON imaptaken (account, folder, sha256)
;
CREATE TABLE mailfuse (
	key VARCHAR NOT NULL, 
	until TIMESTAMP WITH TIME ZONE NOT NULL, 
	count INTEGER NOT NULL, 
	PRIMARY KEY (key)
)
;
CREATE TABLE mailsuppression (
	email VARCHAR NOT NULL, 
	until TIMESTAMP WITH TIME ZONE NOT NULL, 
	since TIMESTAMP WITH TIME ZONE NOT NULL, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (email)
)
;
CREATE TABLE quarantine (
	id SERIAL NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	stage VARCHAR NOT NULL, 
	reason VARCHAR NOT NULL, 
	detail TEXT NOT NULL, 
	raw_sha256 VARCHAR NOT NULL, 
	size INTEGER NOT NULL, 
	envelope VARCHAR NOT NULL, 
	header_from VARCHAR NOT NULL, 
	header_subject VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	released_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
)
;
CREATE INDEX ix_quarantine_raw_sha256 ON quarantine (raw_sha256)
;
CREATE INDEX ix_quarantine_status ON quarantine (status)
;
CREATE TABLE rawmessage (
	sha256 VARCHAR NOT NULL, 
	size INTEGER NOT NULL, 
	data BYTEA NOT NULL, 
	PRIMARY KEY (sha256)
)
;
CREATE TABLE schemainfo (
	key VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY (key)
)
;
CREATE TABLE slacursor (
	name VARCHAR NOT NULL, 
	low INTEGER NOT NULL, 
	high INTEGER NOT NULL, 
	PRIMARY KEY (name)
)
;
CREATE TABLE ticket (
	id SERIAL NOT NULL, 
	subject TEXT NOT NULL, 
	type VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	priority VARCHAR NOT NULL, 
	queue VARCHAR NOT NULL, 
	requester VARCHAR NOT NULL, 
	assignee VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	message_count INTEGER NOT NULL, 
	rules_version VARCHAR NOT NULL, 
	PRIMARY KEY (id)
)
;
CREATE INDEX ix_ticket_created_at ON ticket (created_at)
;
CREATE INDEX ix_ticket_queue ON ticket (queue)
;
CREATE INDEX ix_ticket_requester ON ticket (requester)
;
CREATE INDEX ix_ticket_status ON ticket (status)
;
CREATE TABLE event (
	id SERIAL NOT NULL, 
	ticket_id INTEGER NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	kind VARCHAR NOT NULL, 
	detail TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE INDEX ix_event_ticket ON event (ticket_id, id)
;
CREATE TABLE message (
	id SERIAL NOT NULL, 
	ticket_id INTEGER, 
	message_id VARCHAR NOT NULL, 
	message_id_synthetic BOOLEAN NOT NULL, 
	message_id_reuse BOOLEAN NOT NULL, 
	digest VARCHAR NOT NULL, 
	raw_sha256 VARCHAR NOT NULL, 
	direction VARCHAR NOT NULL, 
	visibility VARCHAR NOT NULL, 
	from_addr VARCHAR NOT NULL, 
	from_name VARCHAR NOT NULL, 
	to_addrs VARCHAR NOT NULL, 
	cc_addrs VARCHAR NOT NULL, 
	subject TEXT NOT NULL, 
	text TEXT NOT NULL, 
	received_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	sent_at TIMESTAMP WITH TIME ZONE, 
	in_reply_to VARCHAR NOT NULL, 
	refs TEXT NOT NULL, 
	parent_message_id VARCHAR, 
	machine_kind VARCHAR NOT NULL, 
	machine_reasons VARCHAR NOT NULL, 
	thread_evidence VARCHAR NOT NULL, 
	routing VARCHAR NOT NULL, 
	envelope VARCHAR NOT NULL, 
	defects VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_message_identity UNIQUE (message_id, digest), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE INDEX ix_message_message_id ON message (message_id)
;
CREATE INDEX ix_message_ticket ON message (ticket_id, id)
;
CREATE TABLE outbox (
	id SERIAL NOT NULL, 
	ticket_id INTEGER, 
	kind VARCHAR NOT NULL, 
	audience VARCHAR NOT NULL, 
	template VARCHAR NOT NULL, 
	auto VARCHAR NOT NULL, 
	message_id TEXT NOT NULL, 
	nonce TEXT NOT NULL, 
	mail_from VARCHAR NOT NULL, 
	raw BYTEA NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	lease_until TIMESTAMP WITH TIME ZONE, 
	lease_token VARCHAR NOT NULL, 
	enqueued_at TIMESTAMP WITH TIME ZONE, 
	sent_at TIMESTAMP WITH TIME ZONE, 
	last_error TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id), 
	UNIQUE (message_id), 
	UNIQUE (nonce)
)
;
CREATE INDEX ix_outbox_due ON outbox (status, next_attempt_at)
;
CREATE INDEX ix_outbox_ticket_id ON outbox (ticket_id)
;
CREATE TABLE participant (
	ticket_id INTEGER NOT NULL, 
	email VARCHAR NOT NULL, 
	role VARCHAR NOT NULL, 
	PRIMARY KEY (ticket_id, email), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE slafired (
	id SERIAL NOT NULL, 
	ticket_id INTEGER NOT NULL, 
	key VARCHAR NOT NULL, 
	target VARCHAR NOT NULL, 
	level VARCHAR NOT NULL, 
	due_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	fired_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	detail TEXT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_slafired_ticket_key UNIQUE (ticket_id, key), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE threadkey (
	key VARCHAR NOT NULL, 
	ticket_id INTEGER NOT NULL, 
	ghost BOOLEAN NOT NULL, 
	PRIMARY KEY (key, ticket_id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE ticketlink (
	ticket_id INTEGER NOT NULL, 
	other_id INTEGER NOT NULL, 
	kind VARCHAR NOT NULL, 
	PRIMARY KEY (ticket_id, other_id, kind), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE ticketmail (
	ticket_id INTEGER NOT NULL, 
	language VARCHAR, 
	PRIMARY KEY (ticket_id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE ticketsla (
	ticket_id INTEGER NOT NULL, 
	policy VARCHAR NOT NULL, 
	reason VARCHAR NOT NULL, 
	service VARCHAR, 
	requested VARCHAR, 
	queue VARCHAR NOT NULL, 
	version VARCHAR NOT NULL, 
	next_due_at TIMESTAMP WITH TIME ZONE, 
	planned_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	seen_event INTEGER NOT NULL, 
	PRIMARY KEY (ticket_id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE INDEX ix_ticketsla_next_due ON ticketsla (next_due_at)
;
CREATE TABLE tickettag (
	ticket_id INTEGER NOT NULL, 
	tag VARCHAR NOT NULL, 
	PRIMARY KEY (ticket_id, tag), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE TABLE agentmessage (
	message_pk INTEGER NOT NULL, 
	ticket_id INTEGER NOT NULL, 
	verdict VARCHAR NOT NULL, 
	agent VARCHAR NOT NULL, 
	reason VARCHAR NOT NULL, 
	evidence VARCHAR NOT NULL, 
	PRIMARY KEY (message_pk), 
	FOREIGN KEY(message_pk) REFERENCES message (id), 
	FOREIGN KEY(ticket_id) REFERENCES ticket (id)
)
;
CREATE INDEX ix_agentmessage_ticket_id ON agentmessage (ticket_id)
;
CREATE TABLE attachment (
	id SERIAL NOT NULL, 
	message_pk INTEGER NOT NULL, 
	filename VARCHAR NOT NULL, 
	content_type VARCHAR NOT NULL, 
	size INTEGER NOT NULL, 
	sha256 VARCHAR NOT NULL, 
	inline BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(message_pk) REFERENCES message (id)
)
;
CREATE INDEX ix_attachment_message_pk ON attachment (message_pk)
;
CREATE TABLE outboxrecipient (
	outbox_id INTEGER NOT NULL, 
	email VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	code INTEGER NOT NULL, 
	reason TEXT NOT NULL, 
	planned_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (outbox_id, email), 
	FOREIGN KEY(outbox_id) REFERENCES outbox (id)
)
;
CREATE INDEX ix_outboxrcpt_email_time ON outboxrecipient (email, planned_at)
;

-- A meeting store as release 0.1.0 created it (schema version 3, before Alembic):
-- its DDL as sqlite_master holds it, and one meeting's records.
CREATE TABLE schema_version (
	version INTEGER NOT NULL,
	description VARCHAR(200) NOT NULL,
	applied_at DATETIME NOT NULL,
	PRIMARY KEY (version)
);
CREATE TABLE issues (
	id INTEGER NOT NULL,
	department VARCHAR(40) NOT NULL,
	week VARCHAR(8) NOT NULL,
	title VARCHAR(200) NOT NULL,
	description TEXT NOT NULL,
	severity VARCHAR(10) NOT NULL,
	segment VARCHAR(300) NOT NULL,
	first_seen DATE,
	submitter VARCHAR(100) NOT NULL,
	source VARCHAR(300) NOT NULL,
	row_hash VARCHAR(64) NOT NULL,
	status VARCHAR(10) NOT NULL,
	created_at DATETIME NOT NULL, source_row INTEGER, resolved_week VARCHAR(8), updated_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT ck_issues_severity CHECK (severity IN ('low', 'medium', 'high', 'critical')),
	CONSTRAINT ck_issues_status CHECK (status IN ('open', 'resolved', 'dropped')),
	UNIQUE (row_hash)
);
CREATE INDEX ix_issues_week_department ON issues (week, department);
CREATE TABLE meetings (
	id INTEGER NOT NULL,
	week VARCHAR(8) NOT NULL,
	title VARCHAR(200) NOT NULL,
	starts_at DATETIME NOT NULL,
	ends_at DATETIME NOT NULL,
	timezone VARCHAR(64) NOT NULL,
	place VARCHAR(300),
	online_link VARCHAR(500),
	organizer_name VARCHAR(100),
	organizer_email VARCHAR(200),
	uid VARCHAR(200) NOT NULL,
	sequence INTEGER NOT NULL,
	invite_hash VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (week),
	UNIQUE (uid)
);
CREATE TABLE attendees (
	id INTEGER NOT NULL,
	name VARCHAR(100) NOT NULL,
	email VARCHAR(200) NOT NULL,
	department VARCHAR(40),
	PRIMARY KEY (id),
	UNIQUE (email)
);
CREATE TABLE attendance (
	meeting_id INTEGER NOT NULL,
	attendee_id INTEGER NOT NULL,
	role VARCHAR(10) NOT NULL,
	present BOOLEAN,
	PRIMARY KEY (meeting_id, attendee_id),
	CONSTRAINT ck_attendance_role CHECK (role IN ('organizer', 'required', 'optional')),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id),
	FOREIGN KEY(attendee_id) REFERENCES attendees (id)
);
CREATE TABLE decisions (
	id INTEGER NOT NULL,
	meeting_id INTEGER NOT NULL,
	issue_id INTEGER,
	department VARCHAR(40),
	text TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id),
	FOREIGN KEY(issue_id) REFERENCES issues (id)
);
CREATE TABLE feedback (
	id INTEGER NOT NULL,
	meeting_id INTEGER NOT NULL,
	attendee_id INTEGER,
	rating INTEGER,
	comment TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT ck_feedback_rating CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id),
	FOREIGN KEY(attendee_id) REFERENCES attendees (id)
);
CREATE TABLE action_items (
	id INTEGER NOT NULL,
	meeting_id INTEGER NOT NULL,
	issue_id INTEGER,
	decision_id INTEGER,
	description TEXT NOT NULL,
	owner VARCHAR(100) NOT NULL,
	department VARCHAR(40) NOT NULL,
	due_date DATE NOT NULL,
	status VARCHAR(10) NOT NULL,
	note TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	closed_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT ck_action_items_status CHECK (status IN ('open', 'done', 'dropped')),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id),
	FOREIGN KEY(issue_id) REFERENCES issues (id),
	FOREIGN KEY(decision_id) REFERENCES decisions (id)
);
CREATE TABLE minutes (
	meeting_id INTEGER NOT NULL,
	summary TEXT NOT NULL,
	"plan" TEXT NOT NULL,
	source VARCHAR(300) NOT NULL,
	content_hash VARCHAR(64) NOT NULL,
	recorded_at DATETIME NOT NULL,
	sent_at DATETIME,
	sent_to INTEGER,
	PRIMARY KEY (meeting_id),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id)
);
CREATE TABLE attendance_records (
	meeting_id INTEGER NOT NULL,
	attendee_id INTEGER NOT NULL,
	status VARCHAR(10) NOT NULL,
	delegate VARCHAR(100) NOT NULL,
	PRIMARY KEY (meeting_id, attendee_id),
	CONSTRAINT ck_attendance_records_status CHECK (status IN ('present', 'absent', 'delegate')),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id),
	FOREIGN KEY(attendee_id) REFERENCES attendees (id)
);
CREATE TABLE segment_times (
	meeting_id INTEGER NOT NULL,
	segment VARCHAR(60) NOT NULL,
	position INTEGER NOT NULL,
	title VARCHAR(200) NOT NULL,
	planned_minutes INTEGER NOT NULL,
	actual_minutes INTEGER,
	PRIMARY KEY (meeting_id, segment),
	FOREIGN KEY(meeting_id) REFERENCES meetings (id)
);
INSERT INTO schema_version VALUES (1, 'issue intake', '2026-11-16 01:00:00.000000');
INSERT INTO schema_version VALUES (2, 'meetings, attendance, decisions, action items, feedback', '2026-11-16 01:00:00.000000');
INSERT INTO schema_version VALUES (3, 'minutes, attendance records, minutes per agenda segment', '2026-11-16 01:00:00.000000');
INSERT INTO issues VALUES (1, 'logistics', '2026-W47', 'EastPost late', '', 'high', 'carrier=EastPost;region=South', '2026-11-17', 'Chen Jie', 'logistics.csv', 'hash-1', 'open', '2026-11-23 01:00:00.000000', 2, NULL, '2026-11-23 01:00:00.000000');
INSERT INTO meetings VALUES (1, '2026-W47', 'Weekly review', '2026-11-23 06:00:00.000000', '2026-11-23 07:30:00.000000', 'Asia/Shanghai', 'Room 5', NULL, 'Li Na', 'li.na@shop.example', 'review-2026-W47@shop', 0, 'abc', '2026-11-20 01:00:00.000000', '2026-11-20 01:00:00.000000');
INSERT INTO attendees VALUES (1, 'Li Na', 'li.na@shop.example', 'operations');
INSERT INTO attendees VALUES (2, 'Chen Jie', 'chen.jie@shop.example', 'logistics');
INSERT INTO attendance VALUES (1, 1, 'organizer', 1);
INSERT INTO attendance VALUES (1, 2, 'required', 0);
INSERT INTO decisions VALUES (1, 1, 1, 'logistics', 'Move South parcels to SwiftExpress', '2026-11-23 07:00:00.000000');
INSERT INTO action_items VALUES (1, 1, 1, 1, 'Agree the volume shift', 'Chen Jie', 'logistics', '2026-11-25', 'open', '', '2026-11-23 07:00:00.000000', NULL);
INSERT INTO action_items VALUES (2, 1, NULL, NULL, 'Recount WH-South', 'Chen Jie', 'logistics', '2026-11-24', 'done', 'counted', '2026-11-23 07:00:00.000000', '2026-11-24 09:00:00.000000');
INSERT INTO feedback VALUES (1, 1, 2, 4, 'Good focus', '2026-11-23 07:30:00.000000');
INSERT INTO minutes VALUES (1, 'EastPost is late in the South.', 'Two extra pickers', 'w47.yaml', 'deadbeef', '2026-11-23 08:00:00.000000', NULL, NULL);
INSERT INTO attendance_records VALUES (1, 1, 'present', '');
INSERT INTO attendance_records VALUES (1, 2, 'absent', '');
INSERT INTO segment_times VALUES (1, 'opening', 1, 'Opening', 5, 6);
